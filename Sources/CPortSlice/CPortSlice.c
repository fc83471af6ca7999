// The few libc calls that Glibc's Swift overlay cannot reach (GNU extensions).
#define _GNU_SOURCE
#include <sys/socket.h>
#include <stddef.h>
#include <sys/uio.h>
#include "CPortSlice.h"

int cportslice_receive_datagrams(int fd, void *buffer, unsigned int slot_size, unsigned int count, unsigned int *lengths) {
    if (count == 0 || count > 256) { return 0; }
    struct iovec vectors[count];
    struct mmsghdr messages[count];
    for (unsigned int i = 0; i < count; i++) {
        vectors[i].iov_base = (char *)buffer + (size_t)i * slot_size;
        vectors[i].iov_len = slot_size;
        messages[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &vectors[i], .msg_iovlen = 1 } };
    }
    int received = recvmmsg(fd, messages, count, MSG_DONTWAIT, NULL);
    for (int i = 0; i < received; i++) { lengths[i] = messages[i].msg_len; }
    return received;
}

int cportslice_accept_nonblocking(int listener, struct sockaddr_in *peer) {
    socklen_t length = sizeof(*peer);
    return accept4(listener, (struct sockaddr *)peer, &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
