/* cauditd_hostile: what a hostile container puts in the strings cauditd reads (run in a container).
 *
 *   cauditd_hostile exec SECONDS   copy itself to /tmp/<hostile name>, exec that copy with a
 *                                  4 KiB+ argv full of mentions and escapes; the copy sets a
 *                                  hostile comm, reads /etc/shadow, writes /etc/<hostile name>,
 *                                  then sleeps SECONDS (alive for a daemon that starts meanwhile)
 *   cauditd_hostile touch N        write N files /etc/cauditd-loop-<i> (a loop of distinct names)
 *   cauditd_hostile flood SECONDS  open and close /etc/shadow as fast as it can (opens the
 *                                  kernel's filter lets through: an attempt to blind the daemon)
 *
 * Hostile means: bytes that are not UTF-8 (0xff, 0xfe), newlines that would start a fake log
 * line or table row, ANSI/OSC sequences, and chat markup (<!channel>, <users/all>, @everyone,
 * [text](url)).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NAME "\xff\xfe\x1b]0;pwned\x07\x1b[2J\n<!channel>@everyone"
#define COMM "\xfe\x1b[31m\n@here"
/* Its "/"s make directories: /etc/<0xff><users, then .../all>...(https:, then the file. */
#define FILE_DIR1 "/etc/\xff<users"
#define FILE_DIR2 FILE_DIR1 "/all>\n\x1b[31m[x](https:"
#define FILE_NAME FILE_DIR2 "//evil.example)"

static int copy_self(const char *to)
{
    int src = open("/proc/self/exe", O_RDONLY);
    unlink(to); /* a copy may be running: a new file, not a write to a busy one */
    int dst = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    struct stat st;
    if (src < 0 || dst < 0 || fstat(src, &st) < 0)
        return -1;
    off_t offset = 0;
    while (offset < st.st_size)
        if (sendfile(dst, src, &offset, st.st_size - offset) <= 0)
            return -1;
    close(src);
    return close(dst);
}

static int do_exec(const char *seconds)
{
    static char big[5000];
    const char *path = "/tmp/" NAME;
    memset(big, 'A', sizeof(big) - 1);
    memcpy(big, "<users/all> <@U024BE7LH> [click](https://evil.example) \xff\n", 58);
    if (copy_self(path) < 0) {
        perror("copy");
        return 1;
    }
    char *argv[] = {(char *)path, "stage2", (char *)seconds, big, NAME, NULL};
    execv(path, argv);
    perror("execv");
    return 1;
}

static int stage2(const char *seconds)
{
    prctl(PR_SET_NAME, COMM, 0, 0, 0);
    int fd = open("/etc/shadow", O_RDONLY);
    if (fd >= 0)
        close(fd);
    mkdir(FILE_DIR1, 0755);
    mkdir(FILE_DIR2, 0755);
    fd = open(FILE_NAME, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0)
        close(fd);
    printf("ready\n");
    fflush(stdout);
    sleep(atoi(seconds));
    return 0;
}

static int do_touch(int count)
{
    char path[64];
    for (int i = 0; i < count; i++) {
        snprintf(path, sizeof(path), "/etc/cauditd-loop-%d", i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0)
            close(fd);
    }
    return 0;
}

static int do_flood(int seconds)
{
    time_t end = time(NULL) + seconds;
    while (time(NULL) < end)
        for (int i = 0; i < 1000; i++) {
            int fd = open("/etc/shadow", O_RDONLY);
            if (fd >= 0)
                close(fd);
        }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "exec"))
        return do_exec(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "stage2"))
        return stage2(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "touch"))
        return do_touch(atoi(argv[2]));
    if (argc == 3 && !strcmp(argv[1], "flood"))
        return do_flood(atoi(argv[2]));
    fprintf(stderr, "usage: cauditd_hostile exec SECONDS | touch N | flood SECONDS\n");
    return 2;
}
