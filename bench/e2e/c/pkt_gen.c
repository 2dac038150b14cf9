/* pkt_gen: the RX-side generator, run inside the bench netns. Sends frames of --size bytes out of
 * the tap (the kernel's transmit = the back-end's receive) as fast as one core allows.
 *   pkt_gen --dev=TAP --size=BYTES --mode=packet|udp --dst-ip=A --dst-mac=M [--seconds=S] [--flows=N]
 * packet: AF_PACKET raw socket bound to the tap, PACKET_QDISC_BYPASS, sendmmsg of 64 prebuilt
 *         frames per call (pktgen-like: no IP stack on the send side); --flows=N (1..64) gives them
 *         N UDP source ports in turn, so a multi-queue tap spreads them over its queues by flow hash.
 * udp:    a connected UDP socket to --dst-ip (the harness adds a static ARP entry so frames go
 *         straight out the tap), sendmmsg of 64 datagrams per call; payload = size - 42.
 * Frames the tap cannot queue (its reader too slow) are dropped by the tap and counted there
 * (tx_dropped); the sender never blocks on them. Prints RESULT sent=.. seconds=.. pps=.. */
#include "e2e_common.h"
#include <linux/if_packet.h>

#define BATCH 64

int main(int argc, char **argv) {
    const char *dev = e2e_arg(argc, argv, "--dev", NULL);
    const char *mode = e2e_arg(argc, argv, "--mode", "packet");
    size_t size = strtoul(e2e_arg(argc, argv, "--size", "64"), NULL, 0);
    double seconds = atof(e2e_arg(argc, argv, "--seconds", "0"));
    const char *dip = e2e_arg(argc, argv, "--dst-ip", "10.99.0.2");
    const char *sip = e2e_arg(argc, argv, "--src-ip", "10.99.0.1");
    uint8_t dmac[6] = {0x02, 0, 0, 0, 0, 0x02}, smac[6] = {0x02, 0, 0, 0, 0, 0x01};
    const char *dm = e2e_arg(argc, argv, "--dst-mac", NULL);
    int flows = atoi(e2e_arg(argc, argv, "--flows", "1"));
    if (!dev || (dm && e2e_parse_mac(dm, dmac)) || size < 60 || size > 9014 || flows < 1 || flows > BATCH) {
        fprintf(stderr, "usage: pkt_gen --dev=TAP --size=N --mode=packet|udp [--dst-ip=A] [--dst-mac=M] [--flows=1..64]\n");
        return 1;
    }
    e2e_install_signals();
    static uint8_t frame[9014];
    static uint8_t flowFrames[BATCH][9014];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    int s;
    if (strcmp(mode, "packet") == 0) {
        s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0); /* protocol 0: send only, receive nothing */
        if (s < 0) e2e_die("socket(AF_PACKET)");
        int one = 1;
        if (setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) e2e_die("PACKET_QDISC_BYPASS");
        struct sockaddr_ll ll = {0};
        ll.sll_family = AF_PACKET;
        ll.sll_ifindex = e2e_ifindex(dev);
        if (bind(s, (struct sockaddr *)&ll, sizeof ll) < 0) e2e_die("bind(AF_PACKET)");
        e2e_build_udp(frame, size, dmac, smac, inet_addr(sip), inet_addr(dip));
        for (int f = 0; f < flows; f++) {
            /* UDP checksum 0 (none, IPv4): only the source port changes */
            memcpy(flowFrames[f], frame, size);
            ((struct udphdr *)(flowFrames[f] + 34))->source = htons((uint16_t)(flows > 1 ? 1024 + f : 9));
        }
        for (int i = 0; i < BATCH; i++) { iov[i].iov_base = flowFrames[i % flows]; iov[i].iov_len = size; }
    } else {
        s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0) e2e_die("socket(UDP)");
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = inet_addr(dip)};
        if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) e2e_die("connect");
        int sb = 4 << 20;
        setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
        for (int i = 0; i < BATCH; i++) { iov[i].iov_base = frame; iov[i].iov_len = size - 42; }
    }
    for (int i = 0; i < BATCH; i++) { msgs[i].msg_hdr.msg_iov = &iov[i]; msgs[i].msg_hdr.msg_iovlen = 1; }

    uint64_t sent = 0, errors = 0;
    double t0 = e2e_now(), end = seconds > 0 ? t0 + seconds : 1e300;
    while (!e2e_stop) {
        int n = sendmmsg(s, msgs, BATCH, 0);
        if (n > 0) sent += (uint64_t)n;
        else if (n < 0 && errno != EINTR && errno != ENOBUFS && errno != EAGAIN && ++errors == 1) perror("pkt_gen: sendmmsg");
        if (e2e_now() > end) break;
    }
    double dt = e2e_now() - t0;
    printf("RESULT sent=%llu seconds=%.3f pps=%.0f errors=%llu\n", (unsigned long long)sent, dt, sent / dt,
           (unsigned long long)errors);
    return 0;
}
