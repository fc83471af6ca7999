/*
 * The least a server can spend on a paced HTTP request on this machine: one epoll loop that
 * reads a request and writes a fixed answer, nothing else. The README compares `serve`'s
 * cost per paced request with this one's, measured the same way:
 *
 *     gcc -O2 -o /tmp/epoll-floor scripts/epoll-floor.c
 *     /tmp/epoll-floor 18601 & python3 scripts/paced-requests.py --port 18601 --pid $! ; kill $!
 *     # pinned: taskset -c 0 /tmp/epoll-floor 18601 & taskset -c 1 python3 scripts/paced-requests.py ...
 *
 * Listens on 127.0.0.1 only; a request is taken as complete once its bytes hold a blank line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
        fprintf(stderr, "usage: %s PORT (1-65535; listens on 127.0.0.1)\n", argv[0]);
        return 2;
    }
    int one = 1;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 512) != 0) {
        perror("cannot listen on 127.0.0.1");
        return 1;
    }
    int poller = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(poller, EPOLL_CTL_ADD, listener, &event);
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
    static char request[65536];
    struct epoll_event ready[64];
    for (;;) {
        int count = epoll_wait(poller, ready, 64, -1);
        for (int index = 0; index < count; index++) {
            int fd = ready[index].data.fd;
            if (fd == listener) {
                int client;
                while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event readable = {.events = EPOLLIN, .data.fd = client};
                    epoll_ctl(poller, EPOLL_CTL_ADD, client, &readable);
                }
                continue;
            }
            ssize_t length = read(fd, request, sizeof request);
            if (length <= 0) {
                close(fd);
                continue;
            }
            if (memmem(request, (size_t)length, "\r\n\r\n", 4) && write(fd, answer, sizeof answer - 1) < 0) close(fd);
        }
    }
}
