/* Shared helpers for the end-to-end limit programs (tap open, clock, frame builders).
 * Header-only so each program stays one gcc invocation; built at run time by bench/run-e2e. */
#ifndef E2E_COMMON_H
#define E2E_COMMON_H
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/ethernet.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* virtio_net_hdr_mrg_rxbuf: the 12-byte header virtio 1.x devices use (num_buffers last). */
#define VNET_HDR_LEN 12

static volatile sig_atomic_t e2e_stop;
static inline void e2e_on_signal(int sig) { (void)sig; e2e_stop = 1; }

static inline void e2e_install_signals(void) {
    struct sigaction sa = {0};
    sa.sa_handler = e2e_on_signal; /* no SA_RESTART: a blocked read returns EINTR and the loop exits */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static inline double e2e_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline uint64_t e2e_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void e2e_die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(2);
}

/* Creates (or attaches to) tap `name` in the caller's network namespace. */
static inline int e2e_open_tap(const char *name, int vnet_hdr) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) e2e_die("open /dev/net/tun");
    struct ifreq ifr = {0};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) e2e_die("TUNSETIFF");
    if (vnet_hdr) {
        int sz = VNET_HDR_LEN;
        if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) e2e_die("TUNSETVNETHDRSZ");
    }
    return fd;
}

/* The harness configures the tap (up, address, neighbour) after it appears; wait for IFF_UP. */
static inline void e2e_wait_up(const char *name, double timeout_s) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) e2e_die("socket");
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    double end = e2e_now() + timeout_s;
    for (;;) {
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) e2e_die("SIOCGIFFLAGS");
        if (ifr.ifr_flags & IFF_UP) break;
        if (e2e_now() > end || e2e_stop) { fprintf(stderr, "tap %s never came up\n", name); exit(3); }
        usleep(10000);
    }
    close(s);
}

static inline int e2e_ifindex(const char *name) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) e2e_die("SIOCGIFINDEX");
    close(s);
    return ifr.ifr_ifindex;
}

static inline uint16_t e2e_csum(const void *data, size_t len, uint32_t sum) {
    const uint8_t *p = data;
    while (len > 1) { sum += (uint32_t)p[0] << 8 | p[1]; p += 2; len -= 2; }
    if (len) sum += (uint32_t)p[0] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return htons((uint16_t)~sum);
}

static inline int e2e_parse_mac(const char *s, uint8_t mac[6]) {
    unsigned m[6];
    if (sscanf(s, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) return -1;
    for (int i = 0; i < 6; i++) mac[i] = (uint8_t)m[i];
    return 0;
}

/* Ethernet + IPv4 + UDP frame of exactly `size` bytes (no FCS), the same shape as testpmd txonly
 * (198.18.0.1:9 -> 198.18.0.2:9 unless overridden). Returns the size. */
static inline size_t e2e_build_udp(uint8_t *f, size_t size, const uint8_t dst[6], const uint8_t src[6],
                            uint32_t saddr, uint32_t daddr) {
    memset(f, 0, size);
    struct ether_header *eh = (void *)f;
    memcpy(eh->ether_dhost, dst, 6);
    memcpy(eh->ether_shost, src, 6);
    eh->ether_type = htons(ETHERTYPE_IP);
    struct iphdr *ip = (void *)(f + 14);
    ip->version = 4; ip->ihl = 5; ip->ttl = 64; ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons((uint16_t)(size - 14));
    ip->saddr = saddr; ip->daddr = daddr;
    ip->check = e2e_csum(ip, 20, 0);
    struct udphdr *u = (void *)(f + 34);
    u->source = htons(9); u->dest = htons(9);
    u->len = htons((uint16_t)(size - 34));
    return size;
}

static const char *e2e_arg(int argc, char **argv, const char *key, const char *dflt) {
    size_t k = strlen(key);
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], key, k) == 0 && argv[i][k] == '=') return argv[i] + k + 1;
        if (strcmp(argv[i], key) == 0) return "1";
    }
    return dflt;
}
#endif
