/* prefork_httpd: a pre-forked static file server, the shape of nginx's worker model, for the
 * overhead benchmark.
 *
 *   prefork_httpd PORT ROOT WORKERS
 *
 * The master binds PORT, forks WORKERS processes that each accept() on the shared listening
 * socket and serve HTTP/1.1 keep-alive GET requests for files below ROOT: per request an
 * open(), fstat(), sendfile() and close(), as nginx does without open_file_cache. The workers
 * live as long as the master; nothing forks or execs per request. Paths containing ".." are
 * refused. Not a general web server: one request per read, no pipelining, no chunked bodies.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define REQUEST_MAX 4096

static const char *root;

static void reply_status(int client, const char *status)
{
    char head[128];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n", status);
    if (write(client, head, n) < 0)
        return;
}

static void serve_file(int client, const char *target)
{
    char path[1024];
    if (strstr(target, "..") || snprintf(path, sizeof(path), "%s%s", root, target) >= (int)sizeof(path)) {
        reply_status(client, "400 Bad Request");
        return;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        reply_status(client, "404 Not Found");
        return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        reply_status(client, "500 Internal Server Error");
        return;
    }
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nContent-Length: %lld\r\nContent-Type: text/html\r\n"
                     "Connection: keep-alive\r\n\r\n",
                     (long long)st.st_size);
    if (write(client, head, n) == n) {
        off_t offset = 0;
        while (offset < st.st_size)
            if (sendfile(client, fd, &offset, st.st_size - offset) <= 0)
                break;
    }
    close(fd);
}

static void serve_connection(int client)
{
    char request[REQUEST_MAX + 1];
    for (;;) {
        ssize_t got = read(client, request, REQUEST_MAX);
        if (got <= 0)
            return;
        request[got] = 0;
        char target[1024];
        if (sscanf(request, "GET %1023s HTTP/1.", target) != 1) {
            reply_status(client, "400 Bad Request");
            return;
        }
        serve_file(client, target);
    }
}

static void worker(int listener)
{
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        serve_connection(client);
        close(client);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: prefork_httpd PORT ROOT WORKERS\n");
        return 2;
    }
    root = argv[2];
    int workers = atoi(argv[3]);
    signal(SIGPIPE, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(listener, 1024) < 0) {
        perror("prefork_httpd: bind/listen");
        return 1;
    }
    for (int i = 0; i < workers; i++)
        if (fork() == 0)
            worker(listener);
    while (wait(NULL) > 0)
        ;
    return 0;
}
