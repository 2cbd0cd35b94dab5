/* LD_PRELOAD for s3s-fs during the comparison: turn Nagle off on every
 * accepted socket.  s3s-fs 0.14.1 leaves it on, and a response written in two
 * parts on a kept-alive connection then waits for the client's delayed ACK
 * (~40 ms), which real object stores do not do and which would swamp the
 * round trip the proxy injects. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);

static int no_nagle(int fd) {
    int on = 1;
    if (fd >= 0) (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    return fd;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    static accept4_fn next;
    if (!next) next = (accept4_fn)dlsym(RTLD_NEXT, "accept4");
    return no_nagle(next(fd, addr, len, flags));
}

int accept(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, 0);
}
