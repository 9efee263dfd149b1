/* Cache-line round trip between CPU 0 and CPU 1, in nanoseconds.
 *
 * bench.py runs this right before and right after each measured run. On a
 * virtual machine the host decides where the two vCPUs sit: on one host
 * core complex (shared L3, a round trip of about 100 ns) or on two (about
 * 400 ns). wrk on CPU 0 and the server on CPU 1 talk over loopback TCP, so
 * every request moves cache lines between them, and req/s follows this
 * placement for every server alike. See RESULTS.md.
 *
 * Prints the lowest of several short bursts: a burst in which either
 * thread was descheduled only ever reads high.
 *
 *   cc -O2 -pthread -o xcpu xcpu.c && ./xcpu [CPU_A CPU_B]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BURSTS 50
#define TRIPS 2000

static _Atomic long turn __attribute__((aligned(64)));
static int cpu_b = 1;

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *responder(void *arg) {
    (void)arg;
    if (pin(cpu_b) != 0) {
        fprintf(stderr, "xcpu: cannot pin to CPU %d\n", cpu_b);
        exit(2);
    }
    for (long i = 0; i < (long)BURSTS * TRIPS; i++) {
        while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * i + 1)
            ;
        atomic_store_explicit(&turn, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int cpu_a = argc > 2 ? atoi(argv[1]) : 0;
    cpu_b = argc > 2 ? atoi(argv[2]) : 1;
    if (pin(cpu_a) != 0) {
        fprintf(stderr, "xcpu: cannot pin to CPU %d\n", cpu_a);
        return 2;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, responder, NULL) != 0)
        return 2;
    double best = 1e30;
    long i = 0;
    for (int b = 0; b < BURSTS; b++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long end = i + TRIPS; i < end; i++) {
            atomic_store_explicit(&turn, 2 * i + 1, memory_order_release);
            while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * i + 2)
                ;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ns = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / TRIPS;
        if (ns < best)
            best = ns;
    }
    pthread_join(t, NULL);
    printf("%.0f\n", best);
    return 0;
}
