/* bench_loop: syscall-heavy workloads for the overhead benchmark, run inside a container.
 *
 *   bench_loop open SECONDS      open+close /etc/passwd in a loop
 *   bench_loop exec SECONDS      fork + exec /bin/true + wait in a loop
 *   bench_loop connect SECONDS   connect to a closed port on 127.0.0.1 (refused at once; no
 *                                packet leaves the container's own loopback)
 *
 * An optional third argument RATE caps the loop at RATE operations per second (paced in small
 * bursts, sleeping whenever it is ahead of schedule), for the throughput benchmark's loss curve.
 *
 * Prints one line: "<mode> <operations> <seconds> <ops_per_second>".
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void op_open(void)
{
    int fd = open("/etc/passwd", O_RDONLY);
    if (fd >= 0)
        close(fd);
}

static void op_exec(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

static void op_connect(void)
{
    struct sockaddr_in addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons(9);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: bench_loop open|exec|connect SECONDS [RATE]\n");
        return 2;
    }
    void (*op)(void) = NULL;
    if (!strcmp(argv[1], "open"))
        op = op_open;
    else if (!strcmp(argv[1], "exec"))
        op = op_exec;
    else if (!strcmp(argv[1], "connect"))
        op = op_connect;
    else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    double seconds = atof(argv[2]);
    double rate = argc == 4 ? atof(argv[3]) : 0;
    /* Paced: bursts of about a millisecond's worth of operations. */
    int burst = rate > 0 ? (rate >= 64000 ? 64 : rate >= 1000 ? (int)(rate / 1000) : 1) : 64;
    double start = now(), elapsed = 0;
    unsigned long ops = 0;
    while (elapsed < seconds) {
        for (int i = 0; i < burst; i++)
            op();
        ops += burst;
        elapsed = now() - start;
        double ahead = rate > 0 ? ops / rate - elapsed : 0;
        if (ahead > 0) {
            struct timespec pause = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
            nanosleep(&pause, NULL);
            elapsed = now() - start;
        }
    }
    printf("%s %lu %.3f %.1f\n", argv[1], ops, elapsed, ops / elapsed);
    return 0;
}
