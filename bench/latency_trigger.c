/* latency_trigger: the workload side of the detection-latency benchmark, run in a container.
 *
 *   latency_trigger COUNT INTERVAL_MS
 *
 * COUNT times: print "<seq> <CLOCK_REALTIME ns>" taken just before the syscall, then open
 * /etc/shadow for reading (what "Read sensitive file untrusted" matches) and close it; sleep
 * INTERVAL_MS. Compiled statically by bench/latency.py and bind-mounted read-only.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: latency_trigger COUNT INTERVAL_MS\n");
        return 2;
    }
    int count = atoi(argv[1]);
    long interval_ms = atol(argv[2]);
    struct timespec pause = { interval_ms / 1000, (interval_ms % 1000) * 1000000L };
    for (int i = 0; i < count; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        printf("%d %lld\n", i, (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
        fflush(stdout);
        int fd = open("/etc/shadow", O_RDONLY);
        if (fd >= 0)
            close(fd);
        nanosleep(&pause, NULL);
    }
    return 0;
}
