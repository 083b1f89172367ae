/* cauditd_attack: attacker moves (and their benign look-alikes) for the default-rule e2e tests.
 *
 *   cauditd_attack spawn PROG ARG...  fork + execv(PROG, ARG...) + wait: a non-shell parent
 *   cauditd_attack packet             socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)
 *   cauditd_attack udp                socket(AF_INET, SOCK_DGRAM, 0)
 *   cauditd_attack dupfile            dup2 of a regular file onto fd 1 (a shell redirect)
 *   cauditd_attack dupsock-high       dup2 of a socket onto fd 10 (not stdio)
 *   cauditd_attack poke               attach to a child, PTRACE_POKEDATA into it, detach
 *   cauditd_attack traceme            a child asks to be traced (PTRACE_TRACEME), as a debugger's
 *   cauditd_attack module             finit_module(-1) and init_module(empty image): both fail,
 *                                     nothing can load, the syscalls are the point
 *   cauditd_attack memfd-exec         copy /bin/busybox into a memfd, fork, fexecve it as `true`
 *   cauditd_attack memfd-noexec       memfd_create as a buffer, then exec a file from the image
 *
 * Exits 0 when the syscalls were made, whatever they returned.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/if_ether.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static volatile long target_word = 42;

static int run_and_wait(char *const argv[])
{
    pid_t child = fork();
    if (child == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    waitpid(child, NULL, 0);
    return 0;
}

static pid_t sleeping_child(void)
{
    pid_t child = fork();
    if (child == 0) {
        sleep(5);
        _exit(0);
    }
    usleep(100000);
    return child;
}

static int do_poke(void)
{
    pid_t child = sleeping_child();
    ptrace(PTRACE_ATTACH, child, NULL, NULL);
    waitpid(child, NULL, 0);
    long word = ptrace(PTRACE_PEEKDATA, child, (void *)&target_word, NULL);
    ptrace(PTRACE_POKEDATA, child, (void *)&target_word, (void *)(word + 1));
    ptrace(PTRACE_DETACH, child, NULL, NULL);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return 0;
}

static int do_traceme(void)
{
    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, NULL, NULL);
        _exit(0);
    }
    waitpid(child, NULL, 0);
    return 0;
}

static int do_module(void)
{
    syscall(SYS_finit_module, -1, "", 0);
    syscall(SYS_init_module, NULL, 0UL, "");
    return 0;
}

static int do_memfd_exec(void)
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
    pid_t child = fork();
    if (child == 0) {
        char *argv[] = {"true", NULL};
        fexecve(fd, argv, environ);
        _exit(127);
    }
    waitpid(child, NULL, 0);
    return 0;
}

static int do_memfd_noexec(void)
{
    int fd = memfd_create("cauditd-buffer", MFD_CLOEXEC);
    if (fd >= 0 && write(fd, "data", 4) == 4)
        close(fd);
    char *argv[] = {"/bin/true", NULL};
    return run_and_wait(argv);
}

/* The result does not matter: the syscall having been made is the scenario. */
static int made(long result)
{
    (void)result;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "spawn") && argc >= 3)
        return run_and_wait(argv + 2);
    if (!strcmp(mode, "packet"))
        return made(socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
    if (!strcmp(mode, "udp"))
        return made(socket(AF_INET, SOCK_DGRAM, 0));
    if (!strcmp(mode, "dupfile"))
        return made(dup2(open("/tmp/cauditd-out", O_WRONLY | O_CREAT | O_TRUNC, 0644), 1));
    if (!strcmp(mode, "dupsock-high"))
        return made(dup2(socket(AF_INET, SOCK_STREAM, 0), 10));
    if (!strcmp(mode, "poke"))
        return do_poke();
    if (!strcmp(mode, "traceme"))
        return do_traceme();
    if (!strcmp(mode, "module"))
        return do_module();
    if (!strcmp(mode, "memfd-exec"))
        return do_memfd_exec();
    if (!strcmp(mode, "memfd-noexec"))
        return do_memfd_noexec();
    return 2;
}
