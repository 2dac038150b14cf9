/* rtt_ping: the kernel-side requester of the round-trip scenario, run inside the bench netns.
 * Sends one ICMP echo request at a time (raw socket) to --dst-ip (the "guest" behind the
 * back-end: testpmd icmpecho, the Java driver, or tap_read --echo for the C limit), waits for the
 * matching reply and records the round-trip time. One outstanding request: this is latency, not
 * throughput.  rtt_ping --dst-ip=A --size=BYTES --seconds=S --out=FILE [--timeout-ms=100]
 * --size is the Ethernet frame size of the request (>= 42 + 8 timestamp bytes).
 * FILE gets one RTT in nanoseconds per line; stdout: RESULT sent=.. received=.. lost=.. */
#include "e2e_common.h"
#include <poll.h>

int main(int argc, char **argv) {
    const char *dip = e2e_arg(argc, argv, "--dst-ip", NULL);
    const char *out = e2e_arg(argc, argv, "--out", NULL);
    size_t size = strtoul(e2e_arg(argc, argv, "--size", "64"), NULL, 0);
    double seconds = atof(e2e_arg(argc, argv, "--seconds", "5"));
    int timeout_ms = atoi(e2e_arg(argc, argv, "--timeout-ms", "100"));
    if (!dip || !out || size < 50 || size > 1514) {
        fprintf(stderr, "usage: rtt_ping --dst-ip=A --out=FILE [--size=N] [--seconds=S]\n");
        return 1;
    }
    e2e_install_signals();
    int s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (s < 0) e2e_die("socket(SOCK_RAW, ICMP)");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = inet_addr(dip)};
    FILE *fo = fopen(out, "w");
    if (!fo) e2e_die(out);
    static uint8_t req[1514], rep[2048];
    size_t icmp_len = size - 34; /* Ethernet 14 + IPv4 20 */
    struct icmphdr *ic = (void *)req;
    uint16_t id = (uint16_t)getpid(), seq = 0;
    uint64_t sent = 0, received = 0, lost = 0;
    double end = e2e_now() + seconds;
    while (!e2e_stop && e2e_now() < end) {
        memset(req, 0, icmp_len);
        ic->type = ICMP_ECHO;
        ic->un.echo.id = htons(id);
        ic->un.echo.sequence = htons(++seq);
        uint64_t t0 = e2e_now_ns();
        memcpy(req + 8, &t0, 8);
        ic->checksum = e2e_csum(req, icmp_len, 0);
        if (sendto(s, req, icmp_len, 0, (struct sockaddr *)&a, sizeof a) < 0) {
            if (errno == EINTR) break;
            e2e_die("sendto");
        }
        sent++;
        for (;;) {
            struct pollfd p = {.fd = s, .events = POLLIN};
            int64_t left = timeout_ms - (int64_t)((e2e_now_ns() - t0) / 1000000);
            if (left <= 0 || poll(&p, 1, (int)left) <= 0) { lost++; break; }
            ssize_t n = recv(s, rep, sizeof rep, 0);
            if (n < 28) continue;
            struct iphdr *ip = (void *)rep;
            struct icmphdr *r = (void *)(rep + ip->ihl * 4);
            if (r->type != ICMP_ECHOREPLY || r->un.echo.id != htons(id) || r->un.echo.sequence != htons(seq)) continue;
            uint64_t t1 = e2e_now_ns();
            fprintf(fo, "%llu\n", (unsigned long long)(t1 - t0));
            received++;
            break;
        }
    }
    fclose(fo);
    printf("RESULT sent=%llu received=%llu lost=%llu\n", (unsigned long long)sent,
           (unsigned long long)received, (unsigned long long)lost);
    return 0;
}
