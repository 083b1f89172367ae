/* process.c: process lifecycle in traced cgroups, from scheduler tracepoints.
 *
 * exec: sched_process_exec gives the path the exec was asked for (TP_DATA_LOC_READ_STR); argv
 * was captured at execve entry by syscalls.c (ARGV_MAX args of ARG_LEN bytes each, longer ones
 * cut) and is joined here by the old thread id. With the kernel's layout (vfs.h) the record
 * also names the executable by identity: the path of the file the kernel runs (mm->exe_file,
 * resolved through its dentries: not "/../dev/shm/x", "/proc/self/fd/3" or a symlink), its
 * inode and device, whether it lives on a mount of another mount namespace than the process's
 * (the host's runtime binary run inside a container's namespaces), and what fds 0-2 are (for
 * shells wired to the network through pipes); and it describes the new process as it starts,
 * so user space reads nothing from /proc for it (a short-lived process is gone by then, and a
 * live one can rewrite what /proc shows): its cwd, pids, controlling terminal and the first
 * ENV_CAPTURE bytes of its environment. fork: sched_process_fork gives parent and child pid;
 * thread creation (CLONE_THREAD, seen in the pending clone flags) is dropped here. exit:
 * sched_process_exit with group_dead (the whole thread group is gone); the status comes from the
 * exit_group()/exit() argument, -1 when the process was killed by a signal.
 *
 * Forks are held in the kernel until their process is named by a record of its own, and the
 * exit of one never named costs no record, unless a rule matches forks or exits (lifecycle.h).
 *
 * Cost: one cgroup_state lookup per exec/fork/exit on the host; a ~5 KB record per exec, a
 * ~100-byte map update per fork (a record when a rule wants forks) and a lookup per exit in a
 * traced cgroup; with the layout, two path walks (exe, cwd) and ~30 kernel reads per exec.
 */
#include "common.h"
#include "vfs.h"
#include "filters.h"

#define PATH_MAX_CAPTURE 256
#define CLONE_THREAD_FLAG 0x00010000ULL

#define EXE_RESOLVED 1       /* exe is the path of the file the kernel runs */
#define EXE_FOREIGN_MNT_NS 2 /* it lives on a mount of another mount namespace */
#define EXE_TRUNCATED 4
#define EXE_DETACHED 8       /* not below the process's root (a memfd, another namespace's file) */
#define EXE_UNLINKED 16      /* no name on disk (O_TMPFILE, deleted, memfd) */
#define EXE_CWD 32           /* cwd is the process's working directory, whole */
#define EXE_ENV 64           /* env holds the first env_len bytes (at most ENV_CAPTURE) */
#define EXE_OVERLAY 128      /* the file is on an overlayfs (a container's image) ... */
#define EXE_UPPER 256        /* ... and in its upper layer: written since the mount */
#define EXE_ENV_WALKED 512   /* env_found holds every variable env_names names (see below) */
#define EXE_ENV_UNWALKED 1024 /* ... and this one that the walk could not get through it */
#define EXE_FIFOS_KEPT 2048  /* a marked relay (pipe_relays) still holding pipes or FIFOs past
                                its stdio (holds_fifo) */
#define EXE_PARENT_INET 4096  /* the parent holds an IPv4/IPv6 socket (one of its first fds) at
                                  this exec; read when stdio holds one, or a pipe: parent_fds */
#define EXE_PARENT_FEEDS 8192  /* stdin is a pipe whose write end the parent holds */
#define EXE_PARENT_DRAINS 16384 /* stdout is a pipe whose read end the parent holds */
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#define EXE_PATH_LEN 512
/* ENV_CAPTURE (bytes of an environment a record holds, a power of two), ENV_FOUND_SLOTS and
 * ENV_FOUND_LEN (variables found past it, and bytes of each) come from cauditd.probes.records,
 * which decodes the record. */
#define ENV_PIECE 4096   /* bytes of a variable read at a time while walking */
#define ENV_WALK_STEP 512 /* reads per walking program: variables, or 4 KiB pieces of one */
#define ENV_WALK_CALLS 30 /* walking programs per exec (a tail call each; 33 at most in all) */

#ifdef KERNEL_LAYOUT
/* The variables the rules ask of proc.env, by their first ENV_KEY_LEN bytes of "NAME=" (zero
 * padded); the value is the key's number (below ENV_NAMES_MAX: a bit of a u64), or
 * ENV_KEY_SHARED for a key of several long names (each variable it matches is kept, not its
 * first only). User space fills it (SETTING_ENV_NAMES) and defines the three. */
struct env_key {
    char name[ENV_KEY_LEN];
};
BPF_HASH(env_names, struct env_key, u8, ENV_NAMES_MAX);
/* The first two bytes of those names, a bit each (of 65,536): most variables of a large
 * environment are passed over on this test alone, without building their key and looking
 * it up. */
struct env_initials {
    u64 bits[1024];
};
BPF_ARRAY(env_initials, struct env_initials, 1);
struct env_piece {
    char text[ENV_PIECE];
};
BPF_PERCPU_ARRAY(env_scratch, struct env_piece, 1);

/* An exec between the tail calls of its programs (per CPU: a tracepoint's programs run with
 * preemption off, so one exec's chain is never interleaved): what the tracepoint said (the
 * programs it tail-calls are not given its argument struct, which BCC defines for the probe
 * alone), and the walk of its environment. */
#define WALK_ON 1
#define WALK_DONE 2 /* reached the end with every variable found kept */
struct exec_chain {
    u32 old_pid;
    u32 filename_loc;
    u64 at;     /* the next read */
    u64 end;
    u64 seen;   /* the names found, a bit each (ENV_KEY_SHARED ones not) */
    u32 found;  /* variables in vars */
    u32 flags;
    u32 calls;  /* walking programs run */
    u32 inside; /* at is a 4 KiB piece of a variable, not its start */
    char vars[ENV_FOUND_SLOTS][ENV_FOUND_LEN];
};
BPF_PERCPU_ARRAY(exec_chains, struct exec_chain, 1);

/* sched_process_exec's chain: the walk (when an environment is too large for the record and
 * the rules name variables), then the record. */
#define EXEC_WALK_HANDLER 0
#define EXEC_EMIT_HANDLER 1
BPF_PROG_ARRAY(exec_handlers, 2); /* [0] env_walk_step, [1] exec_emit */
#endif

struct stdio_fd {
    u32 mode; /* i_mode: S_IFIFO for pipes and FIFOs, S_IFSOCK, S_IFCHR for ttys... */
    u32 dev;
    u64 ino;
    u32 sock_info; /* a socket's family and type (socket_info), else 0 */
    u32 _pad;
};

struct exec_record {
    struct event_header h;
    u32 old_pid;
    u32 argc;
    u32 flags;
    u32 exe_flags;
    u64 exe_ino;
    u32 exe_dev;
    u32 ns_pid;  /* pid in the top-level container's pid namespace (container_ns_pid) */
    u32 vpid;    /* pid in the process's own pid namespace */
    u32 tty;     /* controlling terminal as /proc/<pid>/stat's tty_nr; 0: none */
    u32 env_len; /* bytes of the environment strings; env holds the first ENV_CAPTURE */
    u32 env_found_count; /* variables in env_found */
    struct stdio_fd stdio[3];
    char filename[PATH_MAX_CAPTURE];
    char exe[EXE_PATH_LEN];
    char cwd[PATH_MAX_CAPTURE];
    char argv[ARGV_MAX][ARG_LEN];
    char env[ENV_CAPTURE];
    char env_found[ENV_FOUND_SLOTS][ENV_FOUND_LEN];
};

#ifdef KERNEL_LAYOUT
static __always_inline int inet_family(u32 sock_info)
{
    u16 family = sock_family(sock_info);
    return family == FAMILY_INET || family == FAMILY_INET6;
}

#define FD_SCAN 64   /* every fd table has room for 64 (NR_OPEN_DEFAULT) */
#define FMODE_READ_BIT 0x1 /* struct file's f_mode: FMODE_READ, FMODE_WRITE */
#define FMODE_WRITE_BIT 0x2

/* Whether one of the task's fds past its stdio may be a FIFO (or a pipe: the same type).
 * Stdio is left out: a container's first process gets pipes there from its runtime (and the
 * pipes check judges stdio by itself). The first FD_SCAN are read; a table grown past them (an
 * fd above 63 is or was open: a table never shrinks) counts as holding one unread, so that
 * moving the FIFOs up before the exec keeps the mark (a mark costs records, never hides one). */
static __always_inline int holds_fifo(u64 task)
{
    u64 fdt = BTF_LOAD(u64, BTF_LOAD(u64, task, OFF_TASK_FILES), OFF_FILES_FDT);
    if (BTF_LOAD(u32, fdt, OFF_FDT_MAX_FDS) > FD_SCAN)
        return 1;
    u64 fds = BTF_LOAD(u64, fdt, OFF_FDT_FD);
    u64 chunk[8];
#pragma unroll
    for (int base = 0; base < FD_SCAN; base += 8) {
        if (bpf_probe_read_kernel(chunk, sizeof(chunk), (void *)(fds + base * 8)))
            return 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            if (base + i > 2 && chunk[i]
                && (file_mode(chunk[i]) & S_IFMT_BITS) == S_IFIFO_BITS)
                return 1;
        }
    }
    return 0;
}

/* What the parent `task` of a process at its exec holds among its first fds: EXE_PARENT_INET
 * an IPv4/IPv6 socket, EXE_PARENT_FEEDS the write end of the pipe whose inode is
 * `stdin_inode` (the child's stdin; 0: not a pipe), EXE_PARENT_DRAINS the read end of
 * `stdout_inode`'s. Read at the exec of a program with a network socket or a pipe on its stdio,
 * so that user space knows:
 * - that it was run by a process holding a network socket when the parent is gone before its
 *   /proc could be read (a shell that put an inherited connection on its own stdio, ran one
 *   command and exited);
 * - who holds the other ends of its pipes when the holder made them itself and execs nothing
 *   after: a relay running a shell through pipes (socat TCP:host:port EXEC:sh,pipes, a script's
 *   subprocess with both piped), which no record of its own shows holding them.
 * Sockets and pipes on higher fds are not seen here (user space's /proc read still may). */
static __always_inline u32 parent_fds(u64 task, u64 stdin_inode, u64 stdout_inode)
{
    u64 fdt = BTF_LOAD(u64, BTF_LOAD(u64, task, OFF_TASK_FILES), OFF_FILES_FDT);
    u64 fds = BTF_LOAD(u64, fdt, OFF_FDT_FD);
    u64 chunk[8];
    u32 found = 0;
#pragma unroll
    for (int base = 0; base < FD_SCAN; base += 8) {
        if (bpf_probe_read_kernel(chunk, sizeof(chunk), (void *)(fds + base * 8)))
            break;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            u64 file = chunk[i];
            if (!file)
                continue;
            u64 inode = kread_u64(file, OFF_FILE_INODE);
            if (inode == stdin_inode || inode == stdout_inode) {
                u32 fmode = kread_u32(file, OFF_FILE_MODE);
                if (inode == stdin_inode && (fmode & FMODE_WRITE_BIT))
                    found |= EXE_PARENT_FEEDS;
                if (inode == stdout_inode && (fmode & FMODE_READ_BIT))
                    found |= EXE_PARENT_DRAINS;
            } else if ((kread_u16(inode, OFF_INODE_MODE) & S_IFMT_BITS) == S_IFSOCK_BITS
                       && inet_family(socket_info(file))) {
                found |= EXE_PARENT_INET;
            }
        }
    }
    return found;
}

/* ns_pid: the task's pid in the first pid namespace below the host's (level 1: where a
 * container of the host's runtime lives), 0 in the host's own. 1 is a container's first process,
 * known here whether or not the runtime has answered yet; a pid namespace nested inside a
 * container does not make its first process a 1 here. vpid: its pid in its own namespace (the
 * innermost), as getpid() there returns it. */
static __always_inline void task_ns_pids(u64 task, struct exec_record *rec)
{
    u64 pid = kread_u64(task, OFF_TASK_THREAD_PID);
    u32 level = kread_u32(pid, OFF_PID_LEVEL);
    rec->ns_pid = level ? kread_u32(pid, OFF_PID_NUMBERS + SIZEOF_UPID + OFF_UPID_NR) : 0;
    /* level is at most MAX_PID_NS_LEVEL (32): numbers[] has level + 1 entries */
    rec->vpid = kread_u32(pid, OFF_PID_NUMBERS + (level & 63) * SIZEOF_UPID + OFF_UPID_NR);
}

/* tty_devnum() of the task's controlling terminal, encoded as new_encode_dev() does for
 * /proc/<pid>/stat (what user space reads for a process it met without its exec). */
static __always_inline u32 task_tty(u64 task)
{
    u64 tty = kread_u64(kread_u64(task, OFF_TASK_SIGNAL), OFF_SIGNAL_TTY);
    if (!tty)
        return 0;
    u64 driver[SPAN_WORDS(SPAN_TTY_DRIVER)] = {};
    SPAN_READ(driver, kread_u64(tty, OFF_TTY_DRIVER), SPAN_TTY_DRIVER);
    u32 major = SPAN_U32(driver, SPAN_TTY_DRIVER, OFF_TTY_DRIVER_MAJOR);
    u32 minor = SPAN_U32(driver, SPAN_TTY_DRIVER, OFF_TTY_DRIVER_MINOR_START) +
                kread_u32(tty, OFF_TTY_INDEX);
    return (minor & 0xff) | (major << 8) | ((minor & ~0xffU) << 12);
}

/* The working directory, when it is below the task's root and fits the record. */
static __always_inline void task_cwd(u64 task, struct rpath *rp, struct exec_record *rec)
{
    u64 mnt = 0, dentry = 0;
    read_path(kread_u64(task, OFF_TASK_FS) + OFF_FS_PWD, &mnt, &dentry);
    rpath_walk(rp, task, mnt, dentry);
    if (rp->flags || RPATH_SIZE - 1 - rp->pos >= sizeof(rec->cwd))
        return;
    rpath_copy(rp, rec->cwd, sizeof(rec->cwd));
    rec->exe_flags |= EXE_CWD;
}

/* 0x80 in each byte of `w` that is 0 or '=' (exact: no false hits, unlike the cheaper test). */
static __always_inline u64 name_ends(u64 w)
{
    const u64 low7 = 0x7f7f7f7f7f7f7f7fULL;
    u64 eq = w ^ 0x3d3d3d3d3d3d3d3dULL;
    u64 nul = ~(((w & low7) + low7) | w | low7);
    return nul | ~(((eq & low7) + low7) | eq | low7);
}

/* `w` up to its first 0 or '=' (kept), the bytes after it zeroed; *ended when there was one. */
static __always_inline u64 name_part(u64 w, int *ended)
{
    u64 ends = name_ends(w);
    if (!ends)
        return w;
    *ended = 1;
    u64 first = ends & -ends;
    return w & ((first << 1) - 1); /* first << 1 is 0 for the last byte: all of w */
}

/* A variable's key in env_names: its first ENV_KEY_LEN (16) bytes up to its '=', as two words
 * with branch-free byte tests (a loop over the bytes is too many branches for the verifier in
 * a loop of ENV_WALK_STEP variables). Past the variable's NUL the piece holds an earlier read:
 * zeroed here. */
static __always_inline void env_key_of(const char *text, struct env_key *key)
{
    u64 words[2];
    __builtin_memcpy(words, text, sizeof(words));
    int ended = 0;
    words[0] = name_part(words[0], &ended);
    words[1] = ended ? 0 : name_part(words[1], &ended);
    __builtin_memcpy(key->name, words, sizeof(words));
}

/* Where the task's environment strings are (mm->env_start..env_end): their length, 0 when
 * there are none or the span makes no sense. */
static __always_inline u32 env_span(u64 task, u64 *start)
{
    u64 where[SPAN_WORDS(SPAN_ENV)] = {};
    SPAN_READ(where, kread_u64(task, OFF_TASK_MM), SPAN_ENV);
    *start = SPAN_U64(where, SPAN_ENV, OFF_MM_ENV_START);
    u64 end = SPAN_U64(where, SPAN_ENV, OFF_MM_ENV_END);
    return end > *start && end - *start <= 0x7fffffff ? end - *start : 0;
}

/* The new image's environment strings, as the kernel just copied them onto its stack: what
 * the process was started with, whatever it later writes over them or however soon it exits. */
static __always_inline void task_env(u64 task, struct exec_record *rec)
{
    u64 start = 0;
    u32 len = env_span(task, &start);
    if (!len)
        return;
    rec->env_len = len;
    long failed;
    if (len >= ENV_CAPTURE) {
        failed = bpf_probe_read_user(rec->env, ENV_CAPTURE, (void *)start);
    } else {
        asm volatile("" : "+r"(len)); /* keep the mask clang would prove redundant: the
                                           verifier needs it to bound the length */
        failed = bpf_probe_read_user(rec->env, len & (ENV_CAPTURE - 1), (void *)start);
    }
    if (!failed)
        rec->exe_flags |= EXE_ENV;
    int zero = 0;
    struct exec_chain *walk = exec_chains.lookup(&zero);
    if (!walk || !(walk->flags & WALK_ON))
        return;
    walk->flags &= ~WALK_ON;
    rec->exe_flags |= walk->flags & WALK_DONE ? EXE_ENV_WALKED : EXE_ENV_UNWALKED;
    u32 found = walk->found < ENV_FOUND_SLOTS ? walk->found : ENV_FOUND_SLOTS;
    rec->env_found_count = found;
    if (found)
        bpf_probe_read_kernel(rec->env_found, sizeof(rec->env_found), walk->vars);
}

/* The executable by identity, what fds 0-2 are, and the process as it starts. */
static __always_inline void describe_exec(struct exec_record *rec)
{
    u64 task = this_task();
    u64 exe_file = kread_u64(kread_u64(task, OFF_TASK_MM), OFF_MM_EXE_FILE);
    struct file_id id = {};
    file_identity(exe_file, &id);
    rec->exe_ino = id.ino;
    rec->exe_dev = id.dev;
    task_ns_pids(task, rec);
    rec->tty = task_tty(task);
    rec->exe_flags = EXE_RESOLVED;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (pipe_relays.lookup(&tgid)) /* kept by sched_process_exec's check */
        rec->exe_flags |= EXE_FIFOS_KEPT;
    if (exe_from_foreign_mnt_ns(task, exe_file))
        rec->exe_flags |= EXE_FOREIGN_MNT_NS;
    u64 inode = kread_u64(exe_file, OFF_FILE_INODE);
    if (!kread_u32(inode, OFF_INODE_NLINK))
        rec->exe_flags |= EXE_UNLINKED;
#ifdef OVERLAY_INODES
    if (kread_u64(kread_u64(inode, OFF_INODE_SB), OFF_SB_MAGIC) == OVERLAYFS_SUPER_MAGIC) {
        rec->exe_flags |= EXE_OVERLAY;
        /* copied up or created there: the overlay inode has an upper dentry */
        if (kread_u64(inode - OFF_OVL_VFS_INODE, OFF_OVL_UPPERDENTRY))
            rec->exe_flags |= EXE_UPPER;
    }
#endif
    struct rpath *rp = rpath_buffer();
    if (rp) {
        u64 mnt = 0, dentry = 0;
        read_path(exe_file + OFF_FILE_PATH, &mnt, &dentry);
        rpath_walk(rp, task, mnt, dentry);
        rpath_copy(rp, rec->exe, EXE_PATH_LEN);
        if (rp->flags & RPATH_TRUNCATED)
            rec->exe_flags |= EXE_TRUNCATED;
        if (rp->flags & RPATH_DETACHED)
            rec->exe_flags |= EXE_DETACHED;
        task_cwd(task, rp, rec);
    }
    task_env(task, rec);
    int inet = 0;
    u64 pipes[2] = {}; /* the inodes of stdin and stdout when they are pipes */
#pragma unroll
    for (int fd = 0; fd < 3; fd++) {
        u64 file = task_fd_file(task, fd);
        struct file_id stdio = {};
        file_identity(file, &stdio);
        rec->stdio[fd].mode = stdio.mode;
        rec->stdio[fd].dev = stdio.dev;
        rec->stdio[fd].ino = stdio.ino;
        if ((stdio.mode & S_IFMT_BITS) == S_IFSOCK_BITS) {
            rec->stdio[fd].sock_info = socket_info(file);
            inet |= inet_family(rec->stdio[fd].sock_info);
        } else if (fd < 2 && (stdio.mode & S_IFMT_BITS) == S_IFIFO_BITS) {
            pipes[fd] = kread_u64(file, OFF_FILE_INODE);
        }
    }
    if (!inet && !pipes[0] && !pipes[1])
        return;
    u64 parent = BTF_LOAD(u64, task, OFF_TASK_REAL_PARENT);
    u32 held = parent_fds(parent, pipes[0], pipes[1]);
    rec->exe_flags |= held;
    if ((held & (EXE_PARENT_FEEDS | EXE_PARENT_DRAINS)) && setting(SETTING_PIPES)) {
        /* its connects and accepts are a relay's from now on (syscalls.c) */
        u32 parent_tgid = BTF_LOAD(u32, parent, OFF_TASK_TGID);
        u8 one = 1;
        pipe_relays.update(&parent_tgid, &one);
    }
}
#endif

/* The record of an exec (with the kernel's layout, the last program of its chain);
 * `filename_loc` is the tracepoint's __data_loc of the path asked: its offset in `ctx`. */
static __always_inline int emit_exec(void *ctx, u32 old_pid, u32 filename_loc)
{
    u64 cgroup_id = bpf_get_current_cgroup_id();
    send_own_held_forks();
    struct exec_record *rec = events.ringbuf_reserve(sizeof(*rec));
    if (!rec) {
        count_lost();
        exec_args.delete(&old_pid);
        return 0;
    }
    fill_header(&rec->h, EVENT_EXEC, cgroup_id);
    rec->old_pid = old_pid;
    rec->ns_pid = 0;
    rec->vpid = 0;
    rec->tty = 0;
    rec->env_len = 0;
    rec->env_found_count = 0;
    rec->exe_flags = 0;
    rec->exe_ino = 0;
    rec->exe_dev = 0;
    rec->exe[0] = 0;
    rec->cwd[0] = 0;
    __builtin_memset(rec->stdio, 0, sizeof(rec->stdio));
#ifdef KERNEL_LAYOUT
    describe_exec(rec);
#endif
    bpf_probe_read_kernel_str(rec->filename, sizeof(rec->filename),
                              (char *)ctx + (filename_loc & 0xffff));
    struct exec_args *captured = exec_args.lookup(&old_pid);
    if (captured) {
        rec->argc = captured->argc;
        rec->flags = captured->flags;
        bpf_probe_read_kernel(rec->argv, sizeof(rec->argv), captured->argv);
        exec_args.delete(&old_pid);
    } else {
        rec->argc = 0;
        rec->flags = 0;
        rec->argv[0][0] = 0;
    }
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    return 0;
}

#ifdef KERNEL_LAYOUT
/* Whether the variable's first two bytes begin some name env_names holds. */
static __always_inline int env_initial(struct env_initials *initials, const char *text)
{
    u32 pair = (u8)text[0] << 8 | (u8)text[1];
    return initials->bits[(pair >> 6) & 1023] >> (pair & 63) & 1;
}

/* Whether a variable of the key numbered `number` is the first of its name (and marks it). */
static __always_inline int env_first(struct exec_chain *walk, u8 number)
{
    if (number == ENV_KEY_SHARED)
        return 1;
    u64 bit = 1ULL << (number & 63);
    if (walk->seen & bit)
        return 0;
    walk->seen |= bit;
    return 1;
}

/* An environment too large for the record is walked variable by variable for the ones the
 * rules name (env_names), wherever they are in it: a variable past the first ENV_CAPTURE
 * bytes is not hidden by padding in front of it. Each found name's first occurrence (the one
 * getenv() returns) goes to the record's env_found, cut at ENV_FOUND_LEN. EXE_ENV_WALKED says
 * the walk reached the end with every one found kept; it does not when the environment takes
 * more than ENV_WALK_CALLS * ENV_WALK_STEP reads (15,360 variables, fewer if some are over
 * 4 KiB), when more names are found than env_found has slots, or when a read fails. A bounded
 * loop's every branch is a state the verifier keeps, so one program walks ENV_WALK_STEP
 * variables and tail-calls itself for the next. Cost: one string read per variable (~85 ns),
 * and a hash lookup for those whose first two bytes begin a name; only for an exec whose
 * environment is over ENV_CAPTURE. */
static __always_inline void walk_begin(void *ctx, struct exec_chain *walk)
{
    walk->flags = 0;
    walk->found = 0;
    if (!setting(SETTING_ENV_NAMES))
        return;
    u64 start = 0;
    u32 len = env_span(this_task(), &start);
    if (len <= ENV_CAPTURE)
        return;
    walk->at = start;
    walk->end = start + len;
    walk->seen = 0;
    walk->calls = 0;
    walk->inside = 0;
    walk->flags = WALK_ON;
    exec_handlers.call(ctx, EXEC_WALK_HANDLER);
}

int env_walk_step(void *ctx)
{
    int zero = 0;
    struct exec_chain *walk = exec_chains.lookup(&zero);
    struct env_piece *piece = env_scratch.lookup(&zero);
    struct env_initials *initials = env_initials.lookup(&zero);
    if (!walk || !piece)
        goto emit;
    /* The names found and the slots used stay in the map, not in registers: the verifier tracks
     * what a register holds, so a loop carrying them would be as many walks as their values. */
    u64 at = walk->at, end = walk->end;
    int inside = walk->inside;
    for (int i = 0; i < ENV_WALK_STEP; i++) {
        if (at >= end) {
            walk->flags |= WALK_DONE;
            goto emit;
        }
        long n = read_user_str(piece->text, ENV_PIECE, (void *)at);
        if (n <= 0)
            goto emit;
        if (!inside && initials && env_initial(initials, piece->text)) {
            struct env_key key = {};
            env_key_of(piece->text, &key);
            u8 *number = env_names.lookup(&key);
            if (number && env_first(walk, *number)) {
                u32 slot = walk->found;
                if (slot >= ENV_FOUND_SLOTS)
                    goto emit; /* not walked: a name found has no slot */
                read_user_str(walk->vars[slot & (ENV_FOUND_SLOTS - 1)], ENV_FOUND_LEN, (void *)at);
                walk->found = slot + 1;
            }
        }
        /* n == ENV_PIECE: no NUL in the piece read, the variable goes on */
        inside = n == ENV_PIECE;
        at += inside ? ENV_PIECE - 1 : n;
    }
    walk->at = at;
    walk->inside = inside;
    if (++walk->calls < ENV_WALK_CALLS)
        exec_handlers.call(ctx, EXEC_WALK_HANDLER);
emit:
    exec_handlers.call(ctx, EXEC_EMIT_HANDLER);
    count_lost(); /* only when the tail call failed */
    return 0;
}

int exec_emit(void *ctx)
{
    int zero = 0;
    struct exec_chain *chain = exec_chains.lookup(&zero);
    if (!chain)
        return 0;
    return emit_exec(ctx, chain->old_pid, chain->filename_loc);
}
#endif

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    if (!cgroup_traced(bpf_get_current_cgroup_id()))
        return 0;
#ifdef KERNEL_LAYOUT
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (pipe_relays.lookup(&tgid) && !holds_fifo(this_task()))
        pipe_relays.delete(&tgid); /* its pipes were closed, by hand or at exec */
    int zero = 0;
    struct exec_chain *chain = exec_chains.lookup(&zero);
    if (!chain)
        return 0;
    chain->old_pid = args->old_pid;
    chain->filename_loc = args->data_loc_filename;
    walk_begin(args, chain);
    exec_handlers.call(args, EXEC_EMIT_HANDLER);
    count_lost(); /* only when the tail call failed */
    return 0;
#else
    return emit_exec(args, args->old_pid, args->data_loc_filename);
#endif
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!cgroup_traced(cgroup_id))
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct pending_syscall *p = pending.lookup(&tid);
    u64 flags = 0;
    u32 nr = 0;
    if (p) {
        nr = p->nr;
        flags = nr == SYSNR_CLONE3 ? p->deref : (nr == SYSNR_CLONE ? p->args[0] : 0);
    }
    if (flags & CLONE_THREAD_FLAG)
        return 0;
    u32 child = args->child_pid, parent = args->parent_pid;
    parent_of.update(&child, &parent);
#ifdef KERNEL_LAYOUT
    u32 tgid = bpf_get_current_pid_tgid() >> 32; /* parent_pid is the forking thread's */
    if (pipe_relays.lookup(&tgid)) {
        u8 one = 1;
        pipe_relays.update(&child, &one);
    }
#endif
    int zero = 0;
    struct held_fork *held = held_scratch.lookup(&zero);
    if (!held)
        return 0;
    struct fork_record *rec = &held->fork;
    fill_header(&rec->h, EVENT_FORK, cgroup_id);
    rec->parent_pid = parent;
    rec->child_pid = child;
    rec->clone_flags = flags;
    rec->nr = nr;
    rec->_pad = 0;
    fill_exe(&rec->exe);
    if (lifecycle_held())
        return hold_fork(held);
    send_held_forks(parent);
    send_fork(&child, held, 1);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    if (!args->group_dead)
        return 0;
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!cgroup_traced(cgroup_id))
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    s32 *code = exit_codes.lookup(&tgid);
    s32 status = code ? *code : -1;
    exit_codes.delete(&tgid);
    parent_of.delete(&tgid); /* left to the LRU, the map stays full: every fork's update
                                 would be an eviction (~1 us more per fork) */
    if (lifecycle_held() ? exit_of_held(tgid, status) : 0)
        return 0;
    send_held_forks(tgid);
    struct exit_record *rec = events.ringbuf_reserve(sizeof(*rec));
    if (!rec) {
        count_lost();
        return 0;
    }
    fill_header(&rec->h, EVENT_EXIT, cgroup_id);
    rec->status = status;
    rec->_pad = 0;
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    return 0;
}

/* cgroup2 directories as the kernel makes them (root 0 is the default hierarchy; the v1
 * hierarchies of a hybrid host have ids of their own). User space learns id -> path before the
 * cgroup's first process runs, so a container gone within milliseconds is still named. */
struct cgroup_record {
    struct event_header h;
    char path[PATH_MAX_CAPTURE];
};

TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    if (args->root != 0)
        return 0;
    struct cgroup_record *rec = events.ringbuf_reserve(sizeof(*rec));
    if (!rec) {
        count_lost();
        return 0;
    }
    fill_header(&rec->h, EVENT_CGROUP, args->id);
    TP_DATA_LOC_READ_STR(rec->path, path, sizeof(rec->path));
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    return 0;
}
