/* tap_write: the tap-write limit of this machine. One thread, one core: writes [12-byte vnet hdr |
 * frame] to a tap as fast as write(2) goes, until SIGINT/SIGTERM or --seconds.
 *   tap_write --tap=NAME --size=BYTES [--gso|--uso] [--seconds=S] [--dst-mac=..]
 * --size is the Ethernet frame without FCS (64, 1514). --uso writes one UDP/IPv4 super-frame of
 * --size bytes (default 65549) with VIRTIO_NET_HDR_GSO_UDP_L4, gso_size 1472 and NEEDS_CSUM (the
 * kernel cuts it into 1472-byte datagrams; Linux 6.2+), to the same address as --gso, without
 * TUNSETOFFLOAD (a tap takes GSO writes with IFF_VNET_HDR alone). --gso writes one TCPv4 super-frame of
 * --size bytes (default 65549 = 14 + 65535) with VIRTIO_NET_HDR_GSO_TCPV4, gso_size 1448 and
 * NEEDS_CSUM, after TUNSETOFFLOAD(CSUM|TSO4|TSO6), to the tap's own IPv4 address (--dst-ip, the
 * harness gives the tap an address in its netns; --dst-mac = the tap's MAC) so the kernel takes
 * it up the stack as one skb. Plain frames go to 02:00:00:00:00:00, a foreign MAC, as testpmd
 * txonly's do, and are dropped by the stack after the tap counted them. Prints one line: RESULT frames=.. bytes=.. seconds=.. pps=.. gbps=.. */
#include "e2e_common.h"

/* linux/virtio_net.h (6.2+): not in bookworm's 6.1 headers. */
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif

int main(int argc, char **argv) {
    const char *tap = e2e_arg(argc, argv, "--tap", NULL);
    if (!tap) { fprintf(stderr, "usage: tap_write --tap=NAME --size=N [--gso|--uso] [--seconds=S]\n"); return 1; }
    int gso = e2e_arg(argc, argv, "--gso", NULL) != NULL;
    int uso = e2e_arg(argc, argv, "--uso", NULL) != NULL;
    if (gso && uso) { fprintf(stderr, "--gso or --uso, not both\n"); return 1; }
    size_t size = strtoul(e2e_arg(argc, argv, "--size", gso || uso ? "65549" : "64"), NULL, 0);
    double seconds = atof(e2e_arg(argc, argv, "--seconds", "0"));
    uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x00}, src[6] = {0x02, 0, 0, 0, 0, 0x02};
    const char *dm = e2e_arg(argc, argv, "--dst-mac", NULL);
    if (dm && e2e_parse_mac(dm, dst)) { fprintf(stderr, "bad --dst-mac\n"); return 1; }
    uint32_t saddr = inet_addr(e2e_arg(argc, argv, "--src-ip", "198.18.0.1"));
    uint32_t daddr = inet_addr(e2e_arg(argc, argv, "--dst-ip", "198.18.0.2"));
    if (size < 60 || size > 65549 || (!gso && !uso && size > 9014)) { fprintf(stderr, "bad --size\n"); return 1; }

    e2e_install_signals();
    int fd = e2e_open_tap(tap, 1);
    if (gso) {
        unsigned off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        if (ioctl(fd, TUNSETOFFLOAD, off) < 0) e2e_die("TUNSETOFFLOAD");
    }
    uint8_t *buf = aligned_alloc(64, (VNET_HDR_LEN + size + 63) / 64 * 64);
    memset(buf, 0, VNET_HDR_LEN);
    uint8_t *f = buf + VNET_HDR_LEN;
    e2e_build_udp(f, size, dst, src, saddr, daddr);
    if (gso) {
        /* Same addresses, TCP instead of UDP; checksum left to the kernel (partial csum). */
        struct iphdr *ip = (void *)(f + 14);
        ip->protocol = IPPROTO_TCP;
        ip->check = 0;
        ip->check = e2e_csum(ip, 20, 0);
        struct tcphdr *t = (void *)(f + 34);
        memset(t, 0, sizeof *t);
        t->source = htons(40000); t->dest = htons(9); t->seq = htonl(1); t->doff = 5; t->ack = 1;
        t->ack_seq = htonl(1); t->window = htons(65535);
        /* pseudo-header sum, as a NEEDS_CSUM sender leaves it */
        uint32_t s = (ntohl(saddr) >> 16) + (ntohl(saddr) & 0xffff) + (ntohl(daddr) >> 16) +
                     (ntohl(daddr) & 0xffff) + IPPROTO_TCP + (uint32_t)(size - 34);
        while (s >> 16) s = (s & 0xffff) + (s >> 16);
        t->check = htons((uint16_t)s);
        struct virtio_net_hdr *h = (void *)buf;
        h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
        h->hdr_len = 14 + 20 + 20;
        h->gso_size = 1448;
        h->csum_start = 14 + 20;
        h->csum_offset = 16;
    }
    if (uso) {
        /* Same addresses and ports as the plain frame; checksum left to the kernel (partial csum). */
        struct udphdr *u = (void *)(f + 34);
        uint32_t s = (ntohl(saddr) >> 16) + (ntohl(saddr) & 0xffff) + (ntohl(daddr) >> 16) +
                     (ntohl(daddr) & 0xffff) + IPPROTO_UDP + (uint32_t)(size - 34);
        while (s >> 16) s = (s & 0xffff) + (s >> 16);
        u->check = htons((uint16_t)s);
        struct virtio_net_hdr *h = (void *)buf;
        h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        h->gso_type = VIRTIO_NET_HDR_GSO_UDP_L4;
        h->hdr_len = 14 + 20 + 8;
        h->gso_size = 1472;
        h->csum_start = 14 + 20;
        h->csum_offset = 6;
    }
    e2e_wait_up(tap, 30);
    fprintf(stderr, "tap_write: writing %zu-byte frames%s to %s\n", size,
            gso ? " (GSO TCPv4)" : uso ? " (GSO UDP_L4)" : "", tap);

    uint64_t frames = 0, errors = 0;
    double t0 = e2e_now(), end = seconds > 0 ? t0 + seconds : 1e300;
    size_t len = VNET_HDR_LEN + size;
    while (!e2e_stop) {
        ssize_t n = write(fd, buf, len);
        if (n == (ssize_t)len) frames++;
        else if (n < 0 && errno != EINTR && errno != EAGAIN && ++errors == 1) perror("tap_write: write");
        if ((frames & 1023) == 0 && e2e_now() > end) break;
    }
    double dt = e2e_now() - t0;
    printf("RESULT frames=%llu bytes=%llu seconds=%.3f pps=%.0f gbps=%.3f errors=%llu\n",
           (unsigned long long)frames, (unsigned long long)(frames * size), dt, frames / dt,
           frames * size * 8 / dt / 1e9, (unsigned long long)errors);
    return 0;
}
