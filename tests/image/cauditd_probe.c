/* cauditd_probe: one syscall scenario per mode, for the probe e2e tests (run in a container).
 *
 *   cauditd_probe memfd            memfd_create + copy /bin/busybox + fexecve("sleep 1")
 *   cauditd_probe ptrace           fork a child, PTRACE_ATTACH (16) to it, detach, reap
 *   cauditd_probe setns            setns(open("/proc/self/ns/uts"), CLONE_NEWUTS)
 *   cauditd_probe unshare          unshare(CLONE_NEWUTS)
 *   cauditd_probe connect IP PORT  TCP connect (fails without a network: the syscall is the point)
 *   cauditd_probe listen PORT      bind 127.0.0.1:PORT and listen
 *   cauditd_probe dupsock          socket(), then dup2 it onto fd 2 (a reverse shell's move)
 *
 * Exits 0 when the syscalls were made, whatever they returned.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int do_memfd(void)
{
    int fd = memfd_create("cauditd-payload", MFD_CLOEXEC);
    int src = open("/bin/busybox", O_RDONLY);
    char buf[65536];
    ssize_t n;
    if (fd < 0 || src < 0)
        return 1;
    while ((n = read(src, buf, sizeof(buf))) > 0)
        if (write(fd, buf, n) != n)
            return 1;
    close(src);
    char *argv[] = {"sleep", "1", NULL};
    fexecve(fd, argv, environ);
    perror("fexecve");
    return 1;
}

static int do_ptrace(void)
{
    pid_t child = fork();
    if (child == 0) {
        sleep(5);
        _exit(0);
    }
    usleep(100000);
    ptrace(PTRACE_ATTACH, child, NULL, NULL);
    waitpid(child, NULL, 0);
    ptrace(PTRACE_DETACH, child, NULL, NULL);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return 0;
}

static int do_connect(const char *ip, int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    inet_pton(AF_INET, ip, &addr.sin_addr);
    connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    return 0;
}

static int do_listen(int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    listen(fd, 4);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "memfd"))
        return do_memfd();
    if (!strcmp(mode, "ptrace"))
        return do_ptrace();
    if (!strcmp(mode, "setns")) {
        setns(open("/proc/self/ns/uts", O_RDONLY), CLONE_NEWUTS);
        return 0;
    }
    if (!strcmp(mode, "unshare")) {
        unshare(CLONE_NEWUTS);
        return 0;
    }
    if (!strcmp(mode, "connect") && argc == 4)
        return do_connect(argv[2], atoi(argv[3]));
    if (!strcmp(mode, "listen") && argc == 3)
        return do_listen(atoi(argv[2]));
    if (!strcmp(mode, "dupsock")) {
        dup2(socket(AF_INET, SOCK_STREAM, 0), 2);
        return 0;
    }
    return 2;
}
