-- wrk script for the post10k workload: POST a 10 KiB body to /echo.
wrk.method = "POST"
wrk.body = string.rep("p", 10240)
wrk.headers["Content-Type"] = "application/octet-stream"
