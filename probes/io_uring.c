/* io_uring.c: opens, connects, accepts and path operations (rename, unlink, mkdir, symlink,
 * link) submitted through io_uring rings, as the syscalls they stand for.
 *
 * Sends with an address (IORING_OP_SEND with one, SENDMSG and their zero-copy kinds) are
 * followed where the kernel copies the address at preparation (IO_URING_SENDS), as sendto and
 * sendmsg records filtered as a connect's destination.
 *
 * An operation submitted through a ring never passes the syscall tracepoints: a ring's openat
 * of /etc/shadow, or its unlinkat of a shell history, is invisible to syscalls.c. The io_uring
 * tracepoints see every request: io_uring_submit_req once it is prepared (its struct io_kiocb
 * holds the copied paths, the dirfds, open_how; a connect's user address), io_uring_complete
 * with its result. Requests of the kinds rules watch are kept from submission to completion (by
 * request pointer), then sent as the same records as the syscalls (an EVENT_OPEN judged and
 * resolved by opens.h; a connect, accept4, renameat2, unlinkat, mkdirat, symlinkat or linkat
 * syscall record with its arguments and paths where the syscall has them, and the directory of
 * a relative first path resolved), flagged as io_uring's; a multishot accept sends one accept4
 * record per connection it accepts. The open, connect and accept filters
 * apply as for syscalls (an accept is sent only from a piped process when every rule about
 * accepts asks that).
 *
 * Needs the kernel's layout (io_kiocb and its commands are kernel-internal) and is compiled after
 * syscalls.c (its specs, records and opens.h); the path operations where the kernel has their
 * commands (IO_URING_FILE_OPS: 5.15 and later). Other ring operations (xattrs, socket,
 * ...) are not followed yet. Cost: one opcode test per ring request on the host; a map
 * update and a copy of up to two paths per followed request in a traced cgroup.
 */
#define IORING_OP_SENDMSG 9
#define IORING_OP_ACCEPT 13
#define IORING_OP_CONNECT 16
#define IORING_OP_OPENAT 18
#define IORING_OP_OPENAT2 28
#define IORING_OP_SEND 26
#define IORING_OP_SEND_ZC 47
#define IORING_OP_SENDMSG_ZC 48
#define IORING_OP_RENAMEAT 35 /* ... to IORING_OP_LINKAT: the path operations */
#define IORING_OP_UNLINKAT 36
#define IORING_OP_MKDIRAT 37
#define IORING_OP_SYMLINKAT 38
#define IORING_OP_LINKAT 39
#define SC_IO_URING 8 /* syscall_record.info: submitted through io_uring */

struct uring_request {
    u32 opcode;
    s32 dfd;
    u32 file_slot; /* an open or accept into the ring's fixed files (no fd to resolve) */
    u32 addr_len;
    u64 flags;
    u64 mode;
    struct pending_syscall call; /* a path operation as its syscall (number, arguments) */
    char data[STR_LEN]; /* the path (a path operation's first), or the socket address */
    char data2[STR_LEN]; /* a path operation's second path */
};
BPF_TABLE("lru_hash", u64, struct uring_request, uring_requests, 4096);
BPF_PERCPU_ARRAY(uring_scratch, struct uring_request, 1);
/* A followed accept's request by its ring and user_data: a multishot accept (one request, a
 * completion per connection) posts its completions without the request (io_uring_complete's
 * req is NULL for them); the entry goes with the request's last completion. */
struct uring_key {
    u64 ctx;
    u64 user_data;
};
BPF_TABLE("lru_hash", struct uring_key, u64, uring_accepts, 1024);
#define IORING_CQE_F_MORE 2 /* more completions of the same request follow */

static __always_inline int is_path_op(u8 opcode)
{
#ifdef IO_URING_FILE_OPS
    return opcode >= IORING_OP_RENAMEAT && opcode <= IORING_OP_LINKAT;
#else
    return 0;
#endif
}

/* The syscall a ring operation stands for (its record's number); 0 for one not followed. */
static __always_inline u32 uring_nr(u8 opcode)
{
    switch (opcode) {
    case IORING_OP_OPENAT:
        return SYSNR_OPENAT;
    case IORING_OP_OPENAT2:
        return SYSNR_OPENAT2;
    case IORING_OP_CONNECT:
        return SYSNR_CONNECT;
    case IORING_OP_ACCEPT:
        return SYSNR_ACCEPT4;
#ifdef IO_URING_SENDS
    case IORING_OP_SEND:
    case IORING_OP_SEND_ZC:
        return SYSNR_SENDTO;
    case IORING_OP_SENDMSG:
    case IORING_OP_SENDMSG_ZC:
        return SYSNR_SENDMSG;
#endif
#ifdef IO_URING_FILE_OPS
    case IORING_OP_RENAMEAT:
        return SYSNR_RENAMEAT2;
    case IORING_OP_UNLINKAT:
        return SYSNR_UNLINKAT;
    case IORING_OP_MKDIRAT:
        return SYSNR_MKDIRAT;
    case IORING_OP_SYMLINKAT:
        return SYSNR_SYMLINKAT;
    case IORING_OP_LINKAT:
        return SYSNR_LINKAT;
#endif
    default:
        return 0;
    }
}

static __always_inline int is_send(u8 opcode)
{
    u32 nr = uring_nr(opcode);
    return nr == SYSNR_SENDTO || nr == SYSNR_SENDMSG;
}

/* Whether a rule wants what the operation stands for: opens are judged at exit and connects
 * filtered at entry, as syscalls.c traces them; the rest are followed when they are sent. */
static __always_inline int uring_followed(u8 opcode)
{
    u32 nr = uring_nr(opcode);
    struct syscall_spec *spec = nr ? spec_of(nr) : NULL;
    if (!spec)
        return 0;
    if (opcode == IORING_OP_CONNECT)
        return spec->enter;
    if (opcode == IORING_OP_OPENAT || opcode == IORING_OP_OPENAT2)
        return spec->exit;
    return spec->emit;
}

#ifdef IO_URING_FILE_OPS
/* A path operation's command as its syscall's arguments (in their syscall positions: renameat2
 * olddirfd, oldpath, newdirfd, newpath, flags; unlinkat dirfd, path, flags; mkdirat dirfd, path,
 * mode; symlinkat target, newdirfd, linkpath; linkat olddirfd, oldpath, newdirfd, newpath,
 * flags; the paths' own are left 0) and its paths (the kernel's copies) into data and data2. */
static __always_inline void read_path_op(struct uring_request *r, u64 cmd, u8 opcode)
{
    struct pending_syscall *call = &r->call;
    __builtin_memset(call, 0, sizeof(*call));
    call->nr = uring_nr(opcode);
    call->id = call->nr;
    u64 first = 0, second = 0;
    if (opcode == IORING_OP_UNLINKAT) {
        call->args[0] = (s64)(s32)kread_u32(cmd, OFF_UNLINK_DFD);
        call->args[2] = kread_u32(cmd, OFF_UNLINK_FLAGS);
        first = kread_u64(cmd, OFF_UNLINK_FILENAME);
    } else if (opcode == IORING_OP_MKDIRAT) {
        call->args[0] = (s64)(s32)kread_u32(cmd, OFF_MKDIR_DFD);
        call->args[2] = kread_u16(cmd, OFF_MKDIR_MODE);
        first = kread_u64(cmd, OFF_MKDIR_FILENAME);
    } else if (opcode == IORING_OP_RENAMEAT) {
        call->args[0] = (s64)(s32)kread_u32(cmd, OFF_RENAME_OLD_DFD);
        call->args[2] = (s64)(s32)kread_u32(cmd, OFF_RENAME_NEW_DFD);
        call->args[4] = kread_u32(cmd, OFF_RENAME_FLAGS);
        first = kread_u64(cmd, OFF_RENAME_OLDPATH);
        second = kread_u64(cmd, OFF_RENAME_NEWPATH);
    } else { /* symlinkat and linkat share io_link */
        s64 new_dfd = (s32)kread_u32(cmd, OFF_LINK_NEW_DFD);
        if (opcode == IORING_OP_SYMLINKAT) {
            call->args[1] = new_dfd;
        } else {
            call->args[0] = (s64)(s32)kread_u32(cmd, OFF_LINK_OLD_DFD);
            call->args[2] = new_dfd;
            call->args[4] = kread_u32(cmd, OFF_LINK_FLAGS);
        }
        first = kread_u64(cmd, OFF_LINK_OLDPATH);
        second = kread_u64(cmd, OFF_LINK_NEWPATH);
    }
    bpf_probe_read_kernel_str(r->data, STR_LEN,
                              (void *)kread_u64(first, OFF_FILENAME_NAME));
    r->data2[0] = 0;
    if (second)
        bpf_probe_read_kernel_str(r->data2, STR_LEN,
                                  (void *)kread_u64(second, OFF_FILENAME_NAME));
}
#endif

TRACEPOINT_PROBE(io_uring, io_uring_submit_req)
{
    u8 opcode = args->opcode;
    if (!uring_followed(opcode) || !cgroup_traced(bpf_get_current_cgroup_id()))
        return 0;
    int zero = 0;
    struct uring_request *r = uring_scratch.lookup(&zero);
    if (!r)
        return 0;
    u64 req = (u64)args->req;
    u64 cmd = req + OFF_REQ_CMD;
    r->opcode = opcode;
    r->data[0] = 0;
    r->addr_len = 0;
    r->file_slot = 0;
    if (opcode == IORING_OP_ACCEPT) {
        if (setting(SETTING_ACCEPT_FILTER) && !call_of_piped_process())
            return count_filtered(FILTERED_ACCEPT);
        r->file_slot = kread_u32(cmd, OFF_ACCEPT_SLOT);
    } else if (opcode == IORING_OP_CONNECT) {
        u64 addr = kread_u64(cmd, OFF_CONNECT_ADDR);
        r->addr_len = kread_u32(cmd, OFF_CONNECT_ADDR_LEN) & 0x7f;
        if (!connect_wanted(addr) && !call_of_piped_process())
            return count_filtered(FILTERED_CONNECT);
        read_user(r->data, 28, (void *)addr); /* sockaddr_in6 at most */
#ifdef IO_URING_SENDS
    } else if (is_send(opcode)) {
        /* the destination its preparation copied (none: a send on a connected socket, which
         * no rule asks for, as sendto without an address) */
        u64 msg = kread_u64(req, OFF_REQ_ASYNC_DATA);
        s32 namelen = msg ? (s32)kread_u32(msg, OFF_MSG_NAMELEN) : 0;
        if (namelen <= 0)
            return 0;
        r->addr_len = namelen > 28 ? 28 : namelen;
        if (!kernel_addr_wanted(msg + OFF_MSG_ADDR) && !call_of_piped_process())
            return count_filtered(FILTERED_CONNECT);
        bpf_probe_read_kernel(r->data, 28, (void *)(msg + OFF_MSG_ADDR));
#endif
#ifdef IO_URING_FILE_OPS
    } else if (is_path_op(opcode)) {
        read_path_op(r, cmd, opcode);
#endif
    } else {
        r->dfd = (s32)kread_u32(cmd, OFF_OPEN_DFD);
        r->file_slot = kread_u32(cmd, OFF_OPEN_SLOT);
        r->flags = kread_u64(cmd, OFF_OPEN_FLAGS);
        r->mode = kread_u64(cmd, OFF_OPEN_MODE);
        u64 name = kread_u64(kread_u64(cmd, OFF_OPEN_FILENAME), OFF_FILENAME_NAME);
        bpf_probe_read_kernel_str(r->data, STR_LEN, (void *)name);
    }
    uring_requests.update(&req, r);
    if (opcode == IORING_OP_ACCEPT) {
        struct uring_key key = {.ctx = (u64)args->ctx, .user_data = args->user_data};
        uring_accepts.update(&key, &req);
    }
    return 0;
}

/* A connect (its address as submitted), a send with an address (as its preparation copied it:
 * sendto's record, sendmsg's) or an accept as its syscall's record. An accept's
 * socket is described by its listener (the request's file: same family and type); its result
 * is an fd, remembered as the server's end as accept()'s is, only when it was not accepted into
 * the ring's fixed-file table, where it is a slot number: read as an fd, it would name another
 * socket of the process, and mark that one a server's end (which the dup filter drops). */
static __always_inline int uring_net_done(struct uring_request *r, u64 req, s64 res,
                                          u64 cgroup_id)
{
    u32 nr = uring_nr(r->opcode);
    u32 sock_info = 0;
    if (nr == SYSNR_ACCEPT4 && res >= 0) {
        sock_info = file_sock_info(kread_u64(req + OFF_REQ_CMD, OFF_ACCEPT_FILE));
        if (!r->file_slot)
            remember_accepted(res);
    }
    struct pending_syscall call = {.nr = nr, .info = SC_IO_URING};
    call.args[0] = (u64)-1; /* the ring names the socket by its request, not always an fd */
    struct syscall_record *rec = syscall_record_begin(&call, res, cgroup_id);
    if (!rec)
        return 0;
    rec->sock_info = sock_info;
    rec->addr_len = r->addr_len > 28 ? 28 : r->addr_len;
    bpf_probe_read_kernel(rec->tail, 28, r->data);
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    return 0;
}

#ifdef IO_URING_FILE_OPS
/* A path operation as its syscall's record: its arguments and paths (path1, and path2 in the
 * tail, as read_strings places a syscall's), the directory a relative first path was relative
 * to (resolve_base, in the submitter's fd table and cwd, which a ring's workers share). */
static __always_inline int uring_path_done(struct uring_request *r, s64 res, u64 cgroup_id)
{
    struct syscall_spec *spec = spec_of(r->call.nr);
    if (!spec)
        return 0;
    r->call.info = SC_IO_URING;
    struct syscall_record *rec = syscall_record_begin(&r->call, res, cgroup_id);
    if (!rec)
        return 0;
    bpf_probe_read_kernel_str(rec->path1, STR_LEN, r->data);
    bpf_probe_read_kernel_str(rec->tail, STR_LEN, r->data2);
    resolve_base(rec, spec, &r->call);
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    return 0;
}
#endif

TRACEPOINT_PROBE(io_uring, io_uring_complete)
{
    u64 req = (u64)args->req;
    struct uring_key key = {.ctx = (u64)args->ctx, .user_data = args->user_data};
    if (!req) { /* a completion posted without its request: a multishot accept's */
        u64 *accept = uring_accepts.lookup(&key);
        if (!accept)
            return 0;
        req = *accept;
    }
    struct uring_request *kept = uring_requests.lookup(&req);
    if (!kept)
        return 0;
    int zero = 0;
    struct uring_request *r = uring_scratch.lookup(&zero);
    struct open_call *c = open_calls.lookup(&zero);
    struct rpath *rp = rpath_buffer();
    if (!r || !c || !rp) {
        uring_requests.delete(&req);
        return 0;
    }
    __builtin_memcpy(r, kept, sizeof(*r));
    /* a multishot accept's entries stay until its last completion (a zero-copy send's "more"
     * is its buffer's release, posted by another request: nothing to keep for) */
    if (r->opcode != IORING_OP_ACCEPT) {
        uring_requests.delete(&req);
    } else if (!(args->cflags & IORING_CQE_F_MORE)) {
        uring_requests.delete(&req);
        uring_accepts.delete(&key);
    }
    s64 res = args->res;
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (r->opcode == IORING_OP_CONNECT || r->opcode == IORING_OP_ACCEPT || is_send(r->opcode))
        return uring_net_done(r, req, res, cgroup_id);
#ifdef IO_URING_FILE_OPS
    if (is_path_op(r->opcode))
        return uring_path_done(r, res, cgroup_id);
#endif
    u64 task = this_task();
    c->nr = uring_nr(r->opcode);
    c->info = OPEN_IO_URING;
    c->dirfd = r->dfd;
    c->flags = r->flags;
    c->mode = r->mode;
    c->path = (u64)r->data;
    c->raw_kernel = 1;
    /* An open into the fixed-file table gives no fd: judged by its path as written. */
    if (!open_target(c, task, res, !r->file_slot))
        return 0;
    return emit_open(c, rp, task, cgroup_id, res);
}
