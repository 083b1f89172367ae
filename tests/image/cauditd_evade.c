/* cauditd_evade: the same act spelt so a literal-minded tracer misses it (issue 12), and the
 * benign look-alikes of each, for the evasion e2e tests (run in a container).
 *
 *   cauditd_evade read PATH              open(PATH, O_RDONLY)
 *   cauditd_evade dirfd DIR NAME         openat(open(DIR), NAME): relative to a directory fd
 *   cauditd_evade chdir DIR NAME         chdir(DIR); open(NAME); chdir("/")
 *   cauditd_evade fchdir DIR NAME        fchdir(open(DIR)); open(NAME); chdir("/")
 *   cauditd_evade pad PATH               PATH after 150 "./" components (past 256 bytes)
 *   cauditd_evade int80-open PATH        open(PATH) through the 32-bit int 0x80 entry
 *   cauditd_evade int80-sigprocmask      rt_sigprocmask through int 0x80 (i386 175: what
 *                                        x86_64 calls init_module)
 *   cauditd_evade int80-connect IP PORT  socketcall(SYS_CONNECT) through int 0x80
 *   cauditd_evade fcntl-dup IP PORT      connect a socket, close(0), fcntl(F_DUPFD, 0) onto 0
 *   cauditd_evade socket-low IP PORT     close(0), socket() lands on fd 0, connect it
 *   cauditd_evade pipe-low               close(0), pipe() lands on fd 0 (a look-alike)
 *   cauditd_evade sendmsg IP PORT        UDP sendmsg with a destination address
 *   cauditd_evade sendmmsg IP PORT       UDP sendmmsg: 127.0.0.1:9 first, then IP:PORT
 *   cauditd_evade connect6 IP PORT       IPv6 socket, connect to ::ffff:IP (v4-mapped)
 *   cauditd_evade fchmodat2 PATH MODE    fchmodat2(AT_FDCWD, PATH, MODE, 0), MODE in octal
 *   cauditd_evade creat PATH MODE        open(PATH, O_CREAT|O_WRONLY, MODE): the mode at birth
 *   cauditd_evade uring-setup            io_uring_setup only
 *   cauditd_evade uring-open PATH        IORING_OP_OPENAT of PATH through a ring
 *   cauditd_evade uring-connect IP PORT  IORING_OP_CONNECT through a ring
 *   cauditd_evade uring-send IP PORT     a UDP datagram to IP:PORT by IORING_OP_SEND with an
 *                                        address (unconnected socket)
 *   cauditd_evade uring-sendmsg IP PORT  the same by IORING_OP_SENDMSG (msg_name)
 *   cauditd_evade uring-unlink PATH      IORING_OP_UNLINKAT of PATH
 *   cauditd_evade uring-mkdir PATH       IORING_OP_MKDIRAT of PATH (mode 0755)
 *   cauditd_evade uring-rename OLD NEW   IORING_OP_RENAMEAT of OLD to NEW
 *   cauditd_evade uring-symlink TARGET LINK
 *                                        IORING_OP_SYMLINKAT: LINK pointing at TARGET
 *   cauditd_evade uring-link OLD NEW     IORING_OP_LINKAT: NEW a hard link of OLD
 *                                        (relative paths: to the working directory)
 *   cauditd_evade argv0 NAME PROG [ARG...]
 *                                        execute PROG with argv[0] NAME (a busybox applet
 *                                        is chosen by it, whatever the path exec'd)
 *   cauditd_evade handle-open PATH       name_to_handle_at(PATH), then open_by_handle_at of the
 *                                        handle (mount fd: PATH's directory), read 1 byte
 *   cauditd_evade handle-name PATH       name_to_handle_at(PATH) only (a look-alike)
 *   cauditd_evade tmpfile-exec DIR PROG  copy PROG into an O_TMPFILE in DIR and execute it
 *                                        through /proc/self/fd/N (argv: "true")
 *   cauditd_evade fd-exec PROG           execute PROG (a file of the image) through
 *                                        /proc/self/fd/N (a look-alike: nothing dropped)
 *   cauditd_evade fcntl-dup-file PATH    close(0), fcntl(F_DUPFD, 0) of PATH onto 0
 *   cauditd_evade env-wipe SECONDS       write over its environment strings (what
 *                                        /proc/<pid>/environ shows), then sleep
 *   cauditd_evade env-pad N SIZE PROG    execute PROG (argv: "true") with N variables of SIZE
 *                                        bytes in front of its own environment
 *   cauditd_evade fifo-relay IN OUT IP PORT [fork|high]
 *                                        a relay with no pipe on its stdio: open FIFO IN to
 *                                        write, FIFO OUT to read, wait 0.3 s (the other end's
 *                                        exec, if it makes one), connect to IP:PORT, then
 *                                        write "exit" into IN; with fork, a child does the
 *                                        connect and the write (it holds the FIFOs by
 *                                        inheritance only); with high, it moves the FIFOs to
 *                                        fds 100 and 101 and execs itself to go on with them
 *                                        (IN and OUT given as &100 and &101: open fds)
 *   cauditd_evade socketpair-exec listen|none PROG
 *                                        what socat EXEC does: a socketpair, one end on the
 *                                        child's fds 0-2 as it execs PROG, the other kept and
 *                                        fed "exit" after 0.5 s; with listen, it first
 *                                        listens on 127.0.0.1 (a bind shell's relay)
 *   cauditd_evade pipe-exec first|after|none IP PORT PROG
 *                                        what socat EXEC:PROG,pipes does: a pipe to the
 *                                        child's stdin and one from its stdout and stderr as
 *                                        it execs PROG, the other ends kept, "exit" written
 *                                        after 0.5 s; with first, it connects to IP:PORT
 *                                        before the fork (socat TCP:IP:PORT EXEC:sh,pipes),
 *                                        with after, 0.3 s after it; none connects nowhere
 *   cauditd_evade accept-inherited PORT  listen on 127.0.0.1:PORT, fork: the child accepts
 *                                        (no address asked) on the listener it inherited,
 *                                        the parent connects to it
 *   cauditd_evade accept-fd3 PORT SCRIPT listen on 127.0.0.1:PORT, fork: the child accepts,
 *                                        puts the connection on fd 3 and runs sh -c SCRIPT;
 *                                        the parent connects and waits
 *   cauditd_evade uring-accept PORT [multishot]
 *                                        listen on 127.0.0.1:PORT and accept through a ring
 *                                        (IORING_OP_ACCEPT; with multishot, one request that
 *                                        accepts every connection) a child's connection, then
 *                                        write "exit" to stdout (a FIFO bind shell's relay)
 *   cauditd_evade uring-accept-fixed PORT dup|none
 *                                        connect to its own listener on 127.0.0.1:PORT (the
 *                                        shell's connection, on fd N), accept through a ring
 *                                        into its fixed-file table, where the kernel picks slot
 *                                        N (slots 0 to N-1 taken); with dup, put the connection
 *                                        on fds 0 and 1 (a probe that read the slot as an fd
 *                                        would take fd N for a server's end: a dup it drops)
 *
 * Exits 0 when the syscalls were made, whatever they returned (the call is the point).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define I386_OPEN 5
#define I386_SOCKETCALL 102
#define I386_RT_SIGPROCMASK 175
#define SYS_CONNECT_CALL 3
#define FCHMODAT2_NR 452

extern char **environ;

static long int80(long nr, long a, long b, long c, long d)
{
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d)
                     : "memory", "r8", "r9", "r10", "r11");
    return ret;
}

/* int 0x80 takes 32-bit pointers: everything it reads must live below 4 GiB. */
static char *low_memory(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
                   -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

static struct sockaddr_in inet_addr_of(const char *ip, const char *port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};
    inet_pton(AF_INET, ip, &addr.sin_addr);
    return addr;
}

static int open_read(const char *path)
{
    return open(path, O_RDONLY);
}

static int do_dirfd(const char *dir, const char *name)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    return openat(dfd, name, O_RDONLY) >= 0 ? 0 : 0;
}

static int do_chdir(const char *dir, const char *name, int via_fd)
{
    if (via_fd) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        if (fchdir(dfd) != 0)
            perror("fchdir");
    } else if (chdir(dir) != 0) {
        perror("chdir");
    }
    open_read(name);
    return chdir("/");
}

static int do_pad(const char *path)
{
    char padded[1024] = "";
    for (int i = 0; i < 150; i++)
        strcat(padded, "./");
    strcat(padded, path[0] == '/' ? path + 1 : path);
    if (chdir("/") != 0)
        return 1;
    open_read(padded);
    return 0;
}

static int do_int80_open(const char *path)
{
    char *low = low_memory(4096);
    strncpy(low, path, 4095);
    long fd = int80(I386_OPEN, (long)low, O_RDONLY, 0, 0);
    printf("int80 open: %ld\n", fd);
    return 0;
}

static int do_int80_sigprocmask(void)
{
    char *low = low_memory(4096);
    long ret = int80(I386_RT_SIGPROCMASK, SIG_BLOCK, (long)low, (long)(low + 64), 8);
    printf("int80 rt_sigprocmask: %ld\n", ret);
    return 0;
}

static int do_int80_connect(const char *ip, const char *port)
{
    char *low = low_memory(4096);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = inet_addr_of(ip, port);
    memcpy(low + 64, &addr, sizeof(addr));
    unsigned int *args = (unsigned int *)low;
    args[0] = fd;
    args[1] = (unsigned int)(unsigned long)(low + 64);
    args[2] = sizeof(addr);
    long ret = int80(I386_SOCKETCALL, SYS_CONNECT_CALL, (long)args, 0, 0);
    printf("int80 socketcall connect: %ld\n", ret);
    return 0;
}

static int connected_socket(const char *ip, const char *port)
{
    struct sockaddr_in addr = inet_addr_of(ip, port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    return fd;
}

static int do_fcntl_dup(const char *ip, const char *port)
{
    int fd = connected_socket(ip, port);
    close(0);
    return fcntl(fd, F_DUPFD, 0) == 0 ? 0 : 0;
}

static int do_socket_low(const char *ip, const char *port)
{
    struct sockaddr_in addr = inet_addr_of(ip, port);
    close(0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    return 0;
}

static int do_pipe_low(void)
{
    int fds[2];
    close(0);
    return pipe(fds) == 0 ? 0 : 0;
}

static int do_sendmsg(const char *ip, const char *port, int many)
{
    struct sockaddr_in first = inet_addr_of("127.0.0.1", "9");
    struct sockaddr_in addr = inet_addr_of(ip, port);
    char payload[] = "x";
    struct iovec iov = {.iov_base = payload, .iov_len = 1};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (!many) {
        struct msghdr msg = {.msg_name = &addr, .msg_namelen = sizeof(addr), .msg_iov = &iov,
                             .msg_iovlen = 1};
        sendmsg(fd, &msg, 0);
        return 0;
    }
    struct mmsghdr msgs[2] = {
        {.msg_hdr = {.msg_name = &first, .msg_namelen = sizeof(first), .msg_iov = &iov,
                     .msg_iovlen = 1}},
        {.msg_hdr = {.msg_name = &addr, .msg_namelen = sizeof(addr), .msg_iov = &iov,
                     .msg_iovlen = 1}},
    };
    sendmmsg(fd, msgs, 2, 0);
    return 0;
}

static int do_connect6(const char *ip, const char *port)
{
    struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_port = htons(atoi(port))};
    char mapped[64];
    snprintf(mapped, sizeof(mapped), "::ffff:%s", ip);
    inet_pton(AF_INET6, mapped, &addr.sin6_addr);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    return 0;
}

/* A minimal ring without liburing: set up, map the SQ ring and SQEs, submit one entry and
 * wait for its completion. */
#ifndef IORING_FILE_INDEX_ALLOC
#define IORING_FILE_INDEX_ALLOC (~0U)
#endif

/* Slots of the ring's fixed-file table taken before uring_one submits (the next slot is the
 * one the kernel allocates); -1: no table. */
static int uring_taken_slots = -1;

static void register_slots(int ring, int taken)
{
    int files[64];
    if (taken >= 63)
        return;
    for (int i = 0; i <= taken; i++)
        files[i] = i < taken ? open("/dev/null", O_RDONLY) : -1; /* -1: an empty slot */
    if (syscall(__NR_io_uring_register, ring, IORING_REGISTER_FILES, files, taken + 1) < 0)
        perror("io_uring_register");
}

static int uring_one(void (*fill)(struct io_uring_sqe *, void *), void *arg)
{
    struct io_uring_params params;
    memset(&params, 0, sizeof(params));
    int ring = syscall(__NR_io_uring_setup, 4, &params);
    if (ring < 0) {
        perror("io_uring_setup");
        return 0;
    }
    if (uring_taken_slots >= 0)
        register_slots(ring, uring_taken_slots);
    if (!fill)
        return 0;
    size_t sq_size = params.sq_off.array + params.sq_entries * sizeof(unsigned);
    char *sq = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring,
                    IORING_OFF_SQ_RING);
    struct io_uring_sqe *sqes = mmap(NULL, params.sq_entries * sizeof(struct io_uring_sqe),
                                     PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring,
                                     IORING_OFF_SQES);
    if (sq == MAP_FAILED || sqes == MAP_FAILED) {
        perror("mmap ring");
        return 0;
    }
    unsigned *tail = (unsigned *)(sq + params.sq_off.tail);
    unsigned *mask = (unsigned *)(sq + params.sq_off.ring_mask);
    unsigned *array = (unsigned *)(sq + params.sq_off.array);
    unsigned index = *tail & *mask;
    memset(&sqes[index], 0, sizeof(sqes[index]));
    fill(&sqes[index], arg);
    array[index] = index;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    long done = syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
    printf("io_uring_enter: %ld\n", done);
    return 0;
}

static void fill_open(struct io_uring_sqe *sqe, void *path)
{
    sqe->opcode = IORING_OP_OPENAT;
    sqe->fd = AT_FDCWD;
    sqe->addr = (unsigned long)path;
    sqe->open_flags = O_RDONLY;
}

/* A path operation (opcode) on uring_paths: the first path, and the second where it has one. */
static const char *uring_paths[2];

static void fill_path_op(struct io_uring_sqe *sqe, void *opcode)
{
    sqe->opcode = *(int *)opcode;
    sqe->fd = AT_FDCWD; /* the (first) dirfd: symlinkat's only one */
    sqe->addr = (unsigned long)uring_paths[0];
    if (sqe->opcode == IORING_OP_MKDIRAT)
        sqe->len = 0755;
    else if (sqe->opcode != IORING_OP_UNLINKAT)
        sqe->addr2 = (unsigned long)uring_paths[1];
    if (sqe->opcode == IORING_OP_RENAMEAT || sqe->opcode == IORING_OP_LINKAT)
        sqe->len = (unsigned)AT_FDCWD; /* the second dirfd */
}

static int uring_path_op(int opcode, const char *first, const char *second)
{
    static int op;
    op = opcode;
    uring_paths[0] = first;
    uring_paths[1] = second;
    return uring_one(fill_path_op, &op);
}

static struct sockaddr_in uring_addr;

/* A datagram on the UDP socket *fd to uring_addr: SEND with its address, or SENDMSG. */
static char datagram[] = "x";
static struct iovec datagram_iov = {datagram, 1};
static struct msghdr datagram_msg = {&uring_addr, sizeof(uring_addr), &datagram_iov, 1};

static void fill_send(struct io_uring_sqe *sqe, void *fd)
{
    sqe->opcode = IORING_OP_SEND;
    sqe->fd = *(int *)fd;
    sqe->addr = (unsigned long)datagram;
    sqe->len = 1;
    sqe->addr2 = (unsigned long)&uring_addr;
    sqe->addr_len = sizeof(uring_addr);
}

static void fill_sendmsg(struct io_uring_sqe *sqe, void *fd)
{
    sqe->opcode = IORING_OP_SENDMSG;
    sqe->fd = *(int *)fd;
    sqe->addr = (unsigned long)&datagram_msg;
    sqe->len = 1;
}

static void fill_connect(struct io_uring_sqe *sqe, void *fd)
{
    sqe->opcode = IORING_OP_CONNECT;
    sqe->fd = *(int *)fd;
    sqe->addr = (unsigned long)&uring_addr;
    sqe->off = sizeof(uring_addr);
}

static int accept_multishot;

static void fill_accept(struct io_uring_sqe *sqe, void *fd)
{
    sqe->opcode = IORING_OP_ACCEPT;
    sqe->fd = *(int *)fd;
    if (accept_multishot)
        sqe->ioprio = IORING_ACCEPT_MULTISHOT;
}

static void fill_accept_fixed(struct io_uring_sqe *sqe, void *fd)
{
    fill_accept(sqe, fd);
    sqe->file_index = IORING_FILE_INDEX_ALLOC;
}

static int listening_socket(const char *port);

static int do_uring_accept(const char *port)
{
    static int listener;
    listener = listening_socket(port);
    pid_t child = fork();
    if (child == 0) { /* the client: off the relay's pipes, so it wires nothing itself */
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        usleep(200000);
        int sock = connected_socket("127.0.0.1", port);
        usleep(300000);
        close(sock);
        _exit(0);
    }
    uring_one(fill_accept, &listener);
    if (write(1, "exit\n", 5) < 0)
        perror("write");
    waitpid(child, NULL, 0);
    return 0;
}

static int do_uring_accept_fixed(const char *port, const char *dup)
{
    static int listener;
    listener = listening_socket(port);
    int shell = connected_socket("127.0.0.1", port);
    uring_taken_slots = shell; /* the accept's slot number is the shell connection's fd */
    uring_one(fill_accept_fixed, &listener);
    if (!strcmp(dup, "dup") && (dup2(shell, 0) < 0 || dup2(shell, 1) < 0))
        perror("dup2");
    return 0;
}

static int do_tmpfile_exec(const char *dir, const char *prog)
{
    int fd = open(dir, O_TMPFILE | O_RDWR, 0755);
    int src = open(prog, O_RDONLY);
    char buf[65536];
    ssize_t n;
    if (fd < 0 || src < 0) {
        perror("open");
        return 1;
    }
    while ((n = read(src, buf, sizeof(buf))) > 0)
        if (write(fd, buf, n) != n)
            return 1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int exe = open(path, O_RDONLY | O_CLOEXEC); /* a read-only fd: the writer must be gone */
    close(fd);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", exe);
    char *argv[] = {"true", NULL};
    execve(path, argv, environ);
    perror("execve");
    return 1;
}

static int do_fd_exec(const char *prog)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", open(prog, O_RDONLY | O_CLOEXEC));
    char *argv[] = {"true", NULL};
    execve(path, argv, environ);
    perror("execve");
    return 1;
}

static int do_fcntl_dup_file(const char *path)
{
    int fd = open(path, O_RDONLY);
    close(0);
    return fcntl(fd, F_DUPFD, 0) == 0 ? 0 : 0;
}

/* The strings the kernel put on the stack at exec, env_start..env_end of /proc/self/stat
 * (fields 50-51): glibc copies some variables (GLIBC_TUNABLES) elsewhere, so writing over
 * what environ points to would leave them in place. */
static int do_env_wipe(const char *seconds)
{
    char stat[4096];
    int fd = open("/proc/self/stat", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, stat, sizeof(stat) - 1);
    if (n <= 0)
        return 1;
    stat[n] = 0;
    char *field = strrchr(stat, ')');
    unsigned long start = 0, end = 0;
    for (int i = 2; field && i <= 51; i++) { /* ")" ends field 2 */
        field = strchr(field + 1, ' ');
        if (field && i == 49)
            start = strtoul(field + 1, NULL, 10);
        if (field && i == 50)
            end = strtoul(field + 1, NULL, 10);
    }
    if (!start || end <= start)
        return 1;
    memset((void *)start, 'x', end - start - 1);
    sleep(atoi(seconds));
    return 0;
}

/* What follows the padding sits past the first few KiB a tracer may read of an environment. */
static int do_env_pad(const char *count, const char *size, const char *prog)
{
    long n = atol(count), len = atol(size), own = 0;
    while (environ[own])
        own++;
    char **envp = calloc(n + own + 1, sizeof(char *));
    if (!envp || len < 8)
        return 1;
    for (long i = 0; i < n; i++) {
        char *var = malloc(len + 1);
        if (!var)
            return 1;
        memset(var, 'x', len);
        var[len] = 0;
        int head = snprintf(var, len, "P%ld=", i);
        var[head] = 'x'; /* snprintf's NUL */
        envp[i] = var;
    }
    memcpy(envp + n, environ, own * sizeof(char *));
    char *argv[] = {"true", NULL};
    execve(prog, argv, envp);
    perror("execve");
    return 1;
}

#define RELAY_HIGH_FD 100

/* A FIFO named by path, or "&N": fd N, already open. */
static int fifo_fd(const char *name, int flags)
{
    return name[0] == '&' ? atoi(name + 1) : open(name, flags);
}

static int do_fifo_relay(const char *in, const char *out, const char *ip, const char *port,
                         const char *how)
{
    int feed = fifo_fd(in, O_WRONLY);
    int drain = fifo_fd(out, O_RDONLY);
    if (in[0] != '&')
        usleep(300000);
    if (!strcmp(how, "high")) {
        /* the FIFOs past fd 63, then an exec: the program that connects opened nothing */
        if (dup2(feed, RELAY_HIGH_FD) < 0 || dup2(drain, RELAY_HIGH_FD + 1) < 0)
            perror("dup2");
        close(feed);
        close(drain);
        char *argv[] = {"cauditd_evade", "fifo-relay", "&100", "&101", (char *)ip, (char *)port,
                        NULL};
        execv("/usr/bin/cauditd_evade", argv);
        perror("execv");
        return 1;
    }
    int forking = !strcmp(how, "fork");
    /* forking: a child that holds the FIFOs only by inheritance connects and feeds the shell */
    pid_t child = forking ? fork() : 0;
    if (child > 0) {
        close(drain);
        close(feed);
        waitpid(child, NULL, 0);
        return 0;
    }
    int sock = connected_socket(ip, port);
    if (feed >= 0 && write(feed, "exit\n", 5) < 0)
        perror("write");
    close(sock);
    close(drain);
    close(feed);
    return 0;
}

/* A TCP socket listening on 127.0.0.1:port ("0": any free port). */
static int listening_socket(const char *port)
{
    struct sockaddr_in addr = inet_addr_of("127.0.0.1", port);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(listener, 1) < 0)
        perror("listen");
    return listener;
}

static int do_socketpair_exec(const char *listening, const char *prog)
{
    int listener = -1;
    if (!strcmp(listening, "listen"))
        listener = listening_socket("0");
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0) {
        perror("socketpair");
        return 0;
    }
    pid_t child = fork();
    if (child == 0) {
        for (int fd = 0; fd < 3; fd++)
            dup2(pair[1], fd);
        close(pair[0]);
        close(pair[1]);
        execl(prog, prog, (char *)NULL);
        _exit(127);
    }
    close(pair[1]);
    usleep(500000);
    if (write(pair[0], "exit\n", 5) < 0)
        perror("write");
    waitpid(child, NULL, 0);
    close(pair[0]);
    if (listener >= 0)
        close(listener);
    return 0;
}

/* The handle of PATH; with open, the file opened again by it (what Shocker did with guessed
 * handles of the host's files). */
static int do_handle(const char *path, int open_it)
{
    struct {
        struct file_handle fh;
        unsigned char bytes[MAX_HANDLE_SZ];
    } h;
    int mount_id;
    h.fh.handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) < 0) {
        perror("name_to_handle_at");
        return 0;
    }
    if (!open_it)
        return 0;
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = 0;
    int mount_fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
    int fd = open_by_handle_at(mount_fd, &h.fh, O_RDONLY);
    if (fd < 0) {
        perror("open_by_handle_at");
        return 0;
    }
    char c;
    if (read(fd, &c, 1) < 0)
        perror("read");
    printf("opened by handle: fd %d\n", fd);
    return 0;
}

static int do_pipe_exec(const char *when, const char *ip, const char *port, const char *prog)
{
    int sock = -1;
    if (!strcmp(when, "first"))
        sock = connected_socket(ip, port);
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0) {
        perror("pipe");
        return 0;
    }
    pid_t child = fork();
    if (child == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl(prog, prog, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    usleep(300000);
    if (!strcmp(when, "after"))
        sock = connected_socket(ip, port);
    usleep(200000);
    if (write(in[1], "exit\n", 5) < 0)
        perror("write");
    close(in[1]);
    waitpid(child, NULL, 0);
    close(out[0]);
    if (sock >= 0)
        close(sock);
    return 0;
}

static int do_accept_inherited(const char *port)
{
    int listener = listening_socket(port);
    pid_t child = fork();
    if (child == 0) {
        close(accept(listener, NULL, NULL));
        _exit(0);
    }
    int sock = connected_socket("127.0.0.1", port);
    waitpid(child, NULL, 0);
    close(sock);
    close(listener);
    return 0;
}

/* A server that hands a shell the connection it accepted on fd 3, not on its stdio: the
 * shell puts it there itself (`exec <&3 >&3 2>&3`), a dup of the server's end, which the
 * redirect rule leaves out. The client, in this process, connects and waits. */
static int do_accept_fd3(const char *port, const char *script)
{
    int listener = listening_socket(port);
    pid_t child = fork();
    if (child == 0) {
        int conn = accept(listener, NULL, NULL);
        if (conn < 0)
            _exit(1);
        close(listener); /* before the dup2: the listener may be fd 3 */
        if (conn != 3) {
            dup2(conn, 3);
            close(conn);
        }
        execl("/bin/sh", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    int sock = connected_socket("127.0.0.1", port);
    waitpid(child, NULL, 0);
    close(sock);
    close(listener);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    const char *a = argc > 2 ? argv[2] : "", *b = argc > 3 ? argv[3] : "";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(mode, "read"))
        return open_read(a) >= 0 ? 0 : 0;
    if (!strcmp(mode, "dirfd"))
        return do_dirfd(a, b);
    if (!strcmp(mode, "chdir"))
        return do_chdir(a, b, 0);
    if (!strcmp(mode, "fchdir"))
        return do_chdir(a, b, 1);
    if (!strcmp(mode, "pad"))
        return do_pad(a);
    if (!strcmp(mode, "int80-open"))
        return do_int80_open(a);
    if (!strcmp(mode, "int80-sigprocmask"))
        return do_int80_sigprocmask();
    if (!strcmp(mode, "int80-connect"))
        return do_int80_connect(a, b);
    if (!strcmp(mode, "fcntl-dup"))
        return do_fcntl_dup(a, b);
    if (!strcmp(mode, "socket-low"))
        return do_socket_low(a, b);
    if (!strcmp(mode, "pipe-low"))
        return do_pipe_low();
    if (!strcmp(mode, "sendmsg"))
        return do_sendmsg(a, b, 0);
    if (!strcmp(mode, "sendmmsg"))
        return do_sendmsg(a, b, 1);
    if (!strcmp(mode, "connect6"))
        return do_connect6(a, b);
    if (!strcmp(mode, "fchmodat2")) {
        syscall(FCHMODAT2_NR, AT_FDCWD, a, strtol(b, NULL, 8), 0);
        return 0;
    }
    if (!strcmp(mode, "creat")) {
        open(a, O_CREAT | O_WRONLY, strtol(b, NULL, 8));
        return 0;
    }
    if (!strcmp(mode, "uring-setup"))
        return uring_one(NULL, NULL);
    if (!strcmp(mode, "uring-open"))
        return uring_one(fill_open, (void *)a);
    if (!strcmp(mode, "uring-connect")) {
        static int fd;
        uring_addr = inet_addr_of(a, b);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        return uring_one(fill_connect, &fd);
    }
    if (!strcmp(mode, "argv0") && argc > 3) {
        argv[3] = argv[2];
        execv(b, argv + 3);
        perror("execv");
        return 1;
    }
    if (!strcmp(mode, "handle-open") || !strcmp(mode, "handle-name"))
        return do_handle(a, !strcmp(mode, "handle-open"));
    if (!strcmp(mode, "uring-send") || !strcmp(mode, "uring-sendmsg")) {
        static int fd;
        uring_addr = inet_addr_of(a, b);
        fd = socket(AF_INET, SOCK_DGRAM, 0);
        return uring_one(strcmp(mode, "uring-send") ? fill_sendmsg : fill_send, &fd);
    }
    if (!strcmp(mode, "uring-unlink"))
        return uring_path_op(IORING_OP_UNLINKAT, a, NULL);
    if (!strcmp(mode, "uring-mkdir"))
        return uring_path_op(IORING_OP_MKDIRAT, a, NULL);
    if (!strcmp(mode, "uring-rename") && argc > 3)
        return uring_path_op(IORING_OP_RENAMEAT, a, b);
    if (!strcmp(mode, "uring-symlink") && argc > 3)
        return uring_path_op(IORING_OP_SYMLINKAT, a, b);
    if (!strcmp(mode, "uring-link") && argc > 3)
        return uring_path_op(IORING_OP_LINKAT, a, b);
    if (!strcmp(mode, "uring-accept")) {
        accept_multishot = !strcmp(b, "multishot");
        return do_uring_accept(a);
    }
    if (!strcmp(mode, "uring-accept-fixed"))
        return do_uring_accept_fixed(a, b);
    if (!strcmp(mode, "tmpfile-exec"))
        return do_tmpfile_exec(a, b);
    if (!strcmp(mode, "fd-exec"))
        return do_fd_exec(a);
    if (!strcmp(mode, "fcntl-dup-file"))
        return do_fcntl_dup_file(a);
    if (!strcmp(mode, "env-wipe"))
        return do_env_wipe(a);
    if (!strcmp(mode, "env-pad"))
        return do_env_pad(a, b, argc > 4 ? argv[4] : "/bin/true");
    if (!strcmp(mode, "socketpair-exec"))
        return do_socketpair_exec(a, b);
    if (!strcmp(mode, "pipe-exec") && argc > 5)
        return do_pipe_exec(a, b, argv[4], argv[5]);
    if (!strcmp(mode, "accept-inherited"))
        return do_accept_inherited(a);
    if (!strcmp(mode, "accept-fd3"))
        return do_accept_fd3(a, b);
    if (!strcmp(mode, "fifo-relay") && argc > 5)
        return do_fifo_relay(a, b, argv[4], argv[5], argc > 6 ? argv[6] : "");
    return 2;
}
