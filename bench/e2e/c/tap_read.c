/* tap_read: the tap-read limit (counts frames read from a tap, one thread, one core), and with
 * --echo the C "guest" for the round trip: answers ICMP echo requests and ARP requests, as
 * testpmd's icmpecho mode does behind a vhost-user back-end.
 *   tap_read --tap=NAME [--echo] [--mac=02:..] [--seconds=S]
 * Blocking reads by default (--block); --spin uses a non-blocking fd and spins (as DPDK's tap PMD does).
 * Prints one line: RESULT frames=.. bytes=.. seconds=.. pps=.. gbps=.. replies=.. */
#include "e2e_common.h"
#include <net/if_arp.h>
#include <netinet/if_ether.h>

static int echo_reply(uint8_t *f, size_t n, const uint8_t mac[6]) {
    struct ether_header *eh = (void *)f;
    if (n >= 42 && eh->ether_type == htons(ETHERTYPE_ARP)) {
        struct ether_arp *a = (void *)(f + 14);
        if (a->ea_hdr.ar_op != htons(ARPOP_REQUEST)) return 0;
        uint8_t ip[4];
        memcpy(ip, a->arp_tpa, 4);
        a->ea_hdr.ar_op = htons(ARPOP_REPLY);
        memcpy(a->arp_tha, a->arp_sha, 6);
        memcpy(a->arp_tpa, a->arp_spa, 4);
        memcpy(a->arp_sha, mac, 6);
        memcpy(a->arp_spa, ip, 4);
        memcpy(eh->ether_dhost, eh->ether_shost, 6);
        memcpy(eh->ether_shost, mac, 6);
        return 1;
    }
    if (n < 42 || eh->ether_type != htons(ETHERTYPE_IP)) return 0;
    struct iphdr *ip = (void *)(f + 14);
    size_t ihl = ip->ihl * 4u;
    if (ip->protocol != IPPROTO_ICMP || n < 14 + ihl + 8) return 0;
    struct icmphdr *ic = (void *)(f + 14 + ihl);
    if (ic->type != ICMP_ECHO) return 0;
    memcpy(eh->ether_dhost, eh->ether_shost, 6);
    memcpy(eh->ether_shost, mac, 6);
    uint32_t t = ip->saddr; ip->saddr = ip->daddr; ip->daddr = t;
    ip->check = 0; ip->check = e2e_csum(ip, ihl, 0);
    ic->type = ICMP_ECHOREPLY;
    ic->checksum = 0;
    ic->checksum = e2e_csum(ic, ntohs(ip->tot_len) - ihl, 0);
    return 1;
}

int main(int argc, char **argv) {
    const char *tap = e2e_arg(argc, argv, "--tap", NULL);
    if (!tap) { fprintf(stderr, "usage: tap_read --tap=NAME [--echo] [--spin] [--seconds=S]\n"); return 1; }
    int echo = e2e_arg(argc, argv, "--echo", NULL) != NULL;
    int spin = e2e_arg(argc, argv, "--spin", NULL) != NULL;
    double seconds = atof(e2e_arg(argc, argv, "--seconds", "0"));
    uint8_t mac[6] = {0x02, 0, 0, 0, 0, 0x02};
    const char *m = e2e_arg(argc, argv, "--mac", NULL);
    if (m && e2e_parse_mac(m, mac)) { fprintf(stderr, "bad --mac\n"); return 1; }

    e2e_install_signals();
    int fd = e2e_open_tap(tap, 1);
    if (spin) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    e2e_wait_up(tap, 30);
    static uint8_t buf[VNET_HDR_LEN + 65536] __attribute__((aligned(64)));
    uint64_t frames = 0, bytes = 0, replies = 0;
    double t0 = e2e_now(), end = seconds > 0 ? t0 + seconds : 1e300;
    while (!e2e_stop) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > VNET_HDR_LEN) {
            frames++;
            bytes += (uint64_t)n - VNET_HDR_LEN;
            if (echo && echo_reply(buf + VNET_HDR_LEN, (size_t)n - VNET_HDR_LEN, mac)) {
                memset(buf, 0, VNET_HDR_LEN);
                if (write(fd, buf, (size_t)n) == n) replies++;
            }
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            e2e_die("read");
        }
        if (seconds > 0 && (frames & 255) == 0 && e2e_now() > end) break;
    }
    double dt = e2e_now() - t0;
    printf("RESULT frames=%llu bytes=%llu seconds=%.3f pps=%.0f gbps=%.3f replies=%llu\n",
           (unsigned long long)frames, (unsigned long long)bytes, dt, frames / dt, bytes * 8 / dt / 1e9,
           (unsigned long long)replies);
    return 0;
}
