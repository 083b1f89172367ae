/* cauditd_falco: behaviours for the rules added after comparing with Falco's rule sets, and
 * their look-alikes. Copied under another name (cp ... /tmp/nginx) it runs as that name.
 *
 *   cauditd_falco spawn PROG ARG...      fork + execv(PROG, ARG...) + wait: a parent of that name
 *   cauditd_falco read-after SECS PATH   sleep, then open PATH for reading (a server reading
 *                                        a file after its start-up)
 *   cauditd_falco open-read PATH         open PATH for reading
 *   cauditd_falco open-write PATH        open PATH for writing (no create, no truncate)
 *   cauditd_falco bpf-prog               bpf(BPF_PROG_LOAD) of a two-instruction socket filter
 *   cauditd_falco bpf-map                bpf(BPF_MAP_CREATE) of a one-entry array (look-alike)
 *   cauditd_falco userfaultfd            userfaultfd(O_CLOEXEC)
 *   cauditd_falco connect ADDR PORT      one TCP connect to an IPv4 address
 *   cauditd_falco udp ADDR PORT          a UDP socket connected to an IPv4 address, one datagram
 *   cauditd_falco setuid UID             setuid(UID)
 *   cauditd_falco serve PORT             listen on 0.0.0.0:PORT, accept one connection (5 s at most)
 *
 * Exits 0 when the syscalls were made, whatever they returned (a refused call is still made).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int spawn(char *const argv[])
{
    pid_t child = fork();
    if (child == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    waitpid(child, NULL, 0);
    return 0;
}

static int open_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd >= 0) {
        char byte;
        if ((flags & O_ACCMODE) == O_RDONLY)
            (void)!read(fd, &byte, 1);
        close(fd);
    }
    return 0;
}

static long bpf(int cmd, union bpf_attr *attr)
{
    return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

static int bpf_prog(void)
{
    struct bpf_insn insns[2] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
        {.code = BPF_JMP | BPF_EXIT},
    };
    char license[] = "GPL";
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insn_cnt = 2;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.license = (uint64_t)(uintptr_t)license;
    long fd = bpf(BPF_PROG_LOAD, &attr);
    if (fd >= 0)
        close((int)fd);
    return 0;
}

static int bpf_map(void)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    long fd = bpf(BPF_MAP_CREATE, &attr);
    if (fd >= 0)
        close((int)fd);
    return 0;
}

static int connect_to(const char *addr, int port, int type)
{
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, addr, &sin.sin_addr);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 && type == SOCK_DGRAM)
        (void)!send(fd, "x", 1, 0);
    close(fd);
    return 0;
}

static int serve(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 1) != 0)
        return 1;
    alarm(5);
    struct sockaddr_in peer;
    socklen_t len = sizeof(peer);
    int conn = accept(fd, (struct sockaddr *)&peer, &len);
    if (conn >= 0)
        close(conn);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "spawn") && argc >= 3)
        return spawn(argv + 2);
    if (!strcmp(mode, "read-after") && argc == 4) {
        sleep(atoi(argv[2]));
        return open_path(argv[3], O_RDONLY);
    }
    if (!strcmp(mode, "open-read") && argc == 3)
        return open_path(argv[2], O_RDONLY);
    if (!strcmp(mode, "open-write") && argc == 3)
        return open_path(argv[2], O_WRONLY);
    if (!strcmp(mode, "bpf-prog"))
        return bpf_prog();
    if (!strcmp(mode, "bpf-map"))
        return bpf_map();
    if (!strcmp(mode, "userfaultfd")) {
        long fd = syscall(SYS_userfaultfd, O_CLOEXEC);
        if (fd >= 0)
            close((int)fd);
        return 0;
    }
    if (!strcmp(mode, "connect") && argc == 4)
        return connect_to(argv[2], atoi(argv[3]), SOCK_STREAM);
    if (!strcmp(mode, "serve") && argc == 3)
        return serve(atoi(argv[2]));
    if (!strcmp(mode, "setuid") && argc == 3)
        return (void)setuid(atoi(argv[2])), 0;
    if (!strcmp(mode, "udp") && argc == 4)
        return connect_to(argv[2], atoi(argv[3]), SOCK_DGRAM);
    return 2;
}
