/* dnsd: a tiny DNS responder for the network tests. Answers A queries for the names given as
 * NAME=IPV4 arguments (TTL 60), NXDOMAIN for any other name, on UDP port 53. Bounded: exits
 * after 100000 queries or 900 seconds. Usage: dnsd web.cauditd.test=10.213.0.3 ...
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_NAMES 16

static char names[MAX_NAMES][256];
static struct in_addr addrs[MAX_NAMES];
static int n_names;

/* qname in wire form at p (no compression in queries) -> dotted text; returns bytes used or -1 */
static int read_qname(const unsigned char *p, int len, char *out)
{
    int i = 0, o = 0;
    while (i < len && p[i] != 0) {
        int l = p[i];
        if (l > 63 || i + 1 + l >= len || o + l + 1 >= 255)
            return -1;
        if (o)
            out[o++] = '.';
        memcpy(out + o, p + i + 1, l);
        o += l;
        i += 1 + l;
    }
    if (i >= len)
        return -1;
    out[o] = 0;
    return i + 1;
}

int main(int argc, char **argv)
{
    for (int a = 1; a < argc && n_names < MAX_NAMES; a++) {
        char *eq = strchr(argv[a], '=');
        if (!eq)
            continue;
        *eq = 0;
        snprintf(names[n_names], sizeof(names[0]), "%s", argv[a]);
        if (inet_pton(AF_INET, eq + 1, &addrs[n_names]) == 1)
            n_names++;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(53)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        perror("dnsd");
        return 1;
    }
    alarm(900);
    for (int served = 0; served < 100000; served++) {
        unsigned char buf[512];
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        int n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        if (n < 17)
            continue;
        char qname[256];
        int used = read_qname(buf + 12, n - 12, qname);
        if (used < 0 || 12 + used + 4 > n)
            continue;
        int qend = 12 + used + 4;
        int qtype = buf[12 + used] << 8 | buf[12 + used + 1];
        int found = -1;
        for (int i = 0; i < n_names; i++)
            if (strcasecmp(names[i], qname) == 0)
                found = i;
        buf[2] = 0x84 | (buf[2] & 0x01); /* QR, AA, keep RD */
        buf[3] = found < 0 ? 3 : 0;      /* NXDOMAIN or NOERROR */
        buf[6] = buf[7] = buf[8] = buf[9] = buf[10] = buf[11] = 0;
        int out = qend;
        if (found >= 0 && qtype == 1 && out + 16 <= (int)sizeof(buf)) {
            unsigned char rr[16] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
            memcpy(rr + 12, &addrs[found], 4);
            memcpy(buf + out, rr, 16);
            out += 16;
            buf[7] = 1;
        }
        sendto(fd, buf, out, 0, (struct sockaddr *)&from, fl);
    }
    return 0;
}
