/*
 * jvhost.h: the one header jextract reads (tools/regen-bindings.sh) and the layout-conformance
 * test compiles (native-bindings/src/test/c/layout.c). Only the system headers the syscall layer
 * needs, and those whose structs and constants the hand-written layouts in datapath are tested
 * against (virtio rings, virtio-net, vhost); ffi-headers/symbols.txt picks the symbols out of them.
 */
#ifndef JVHOST_FFI_H
#define JVHOST_FFI_H

/* memfd_create, accept4, pipe2, MSG_CMSG_CLOEXEC, gettid, sched_[sg]etaffinity and cpu_set_t are
 * GNU extensions in glibc. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <features.h>

/*
 * With __USE_GNU on, glibc declares the address parameters of bind/connect/accept/accept4 as
 * transparent unions (__SOCKADDR_ARG); jextract does not know that attribute and would emit them as
 * by-value unions. So <sys/socket.h> (which <net/if.h> also includes) is read first, in its
 * POSIX form with plain `struct sockaddr *` parameters, and __USE_GNU is switched back on for the
 * rest. Nothing else we use from <sys/socket.h> / <bits/socket.h> depends on __USE_GNU except the
 * accept4 prototype, declared below exactly as glibc does (minus the transparent union).
 */
#undef __USE_GNU
#include <sys/socket.h>
#define __USE_GNU 1
extern int accept4(int __fd, struct sockaddr *__restrict __addr,
                   socklen_t *__restrict __addr_len, int __flags);

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <net/if.h>

#include <linux/if_tun.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/virtio_net.h>
#include <linux/vhost_types.h>
#include <linux/io_uring.h>

/*
 * Constants newer than the oldest uapi headers jvhost builds against (Debian 12's linux-libc-dev
 * 6.1 lacks them): defined here only when the system header does not, with the values of the
 * virtio 1.2 specification and of later Linux include/uapi headers. With newer headers the
 * system's own definitions win, and the layout-conformance test then checks the committed
 * generated values against them.
 */
#ifndef VIRTIO_F_NOTIFICATION_DATA
#define VIRTIO_F_NOTIFICATION_DATA 38 /* virtio 1.2 §6, linux/virtio_config.h */
#endif
#ifndef VIRTIO_NET_F_GUEST_USO4
#define VIRTIO_NET_F_GUEST_USO4 54 /* virtio 1.2 §5.1.3, linux/virtio_net.h */
#endif
#ifndef VIRTIO_NET_F_GUEST_USO6
#define VIRTIO_NET_F_GUEST_USO6 55
#endif
#ifndef VIRTIO_NET_F_HOST_USO
#define VIRTIO_NET_F_HOST_USO 56
#endif
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5 /* virtio 1.2 §5.1.6, linux/virtio_net.h */
#endif
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20 /* linux/if_tun.h */
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

/*
 * Values of function-like macros. jextract evaluates object-like macros (even the _IOW/_IOR ioctl
 * numbers such as TUNSETIFF), but it emits nothing for function-like macros such as CMSG_LEN(len)
 * and CMSG_SPACE(len). The values the syscall layer needs are computed here by the C compiler
 * from the real macros, as enum constants: an enum constant is a compile-time constant that jextract
 * emits as a Java constant, whereas a `static const` variable would be emitted as a global variable
 * looked up as a symbol at run time (it has none: it is static). The layout-conformance test checks
 * each of them against the C compiler's value.
 */
enum jvhost_cmsg {
    /* Alignment of control messages (CMSG_ALIGN rounds up to sizeof(size_t)). */
    JVHOST_CMSG_ALIGN = sizeof(size_t),
    /* CMSG_LEN(0): the aligned cmsghdr; CMSG_DATA(c) is at this offset from c. */
    JVHOST_CMSG_HDR_LEN = CMSG_LEN(0),
    /* cmsg_len of an SCM_RIGHTS message carrying one fd. */
    JVHOST_CMSG_LEN_1FD = CMSG_LEN(sizeof(int)),
    /* Control buffer bytes for one fd. */
    JVHOST_CMSG_SPACE_1FD = CMSG_SPACE(sizeof(int)),
    /* vhost-user sends at most 8 fds per message (one per memory region of SET_MEM_TABLE). */
    JVHOST_CMSG_MAX_FDS = 8,
    /* Control buffer bytes for JVHOST_CMSG_MAX_FDS fds. */
    JVHOST_CMSG_SPACE_MAX_FDS = CMSG_SPACE(8 * sizeof(int))
};

#endif
