/* process.c: process lifecycle in traced cgroups, from scheduler tracepoints.
 *
 * sched_process_exec gives the executed file's path (TP_DATA_LOC_READ_STR: no kernel struct
 * reads, so mismatched kernel headers are harmless). Cost: one cgroup_state lookup per exec on
 * the host; a ~300-byte ring buffer record per exec in a traced cgroup.
 */
#include "common.h"

#define EVENT_EXEC 1
#define PATH_MAX_CAPTURE 256

struct exec_record {
    struct event_header h;
    u32 old_pid;
    u32 _pad;
    char filename[PATH_MAX_CAPTURE];
};

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!cgroup_traced(cgroup_id))
        return 0;
    struct exec_record *rec = events.ringbuf_reserve(sizeof(*rec));
    if (!rec) {
        count_lost();
        return 0;
    }
    fill_header(&rec->h, EVENT_EXEC, cgroup_id);
    rec->old_pid = args->old_pid;
    rec->_pad = 0;
    TP_DATA_LOC_READ_STR(rec->filename, filename, sizeof(rec->filename));
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    return 0;
}
