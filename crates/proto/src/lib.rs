//! Sans-IO protocol code for capataz: HTTP/1.1 and uwsgi parsing. (stub: being written)
#![forbid(unsafe_code)]
