package io.jvhost.driver;

/**
 * Buffer layouts as Linux's {@code virtio_net} driver builds them, so the device is tested with
 * the chains a real guest posts. Each method fills {@code addrs}/{@code lens} (guest physical)
 * and returns the descriptor count; pass them to {@link DriverVirtqueue#add}.
 *
 * <ul>
 *   <li>TX, header inline ({@code VIRTIO_F_ANY_LAYOUT}/{@code VERSION_1}, the skb has headroom):
 *       the 12-byte {@code virtio_net_hdr_mrg_rxbuf} is pushed into the frame's headroom and
 *       header+frame is one readable descriptor.</li>
 *   <li>TX, legacy: the header is a separate first readable descriptor, then the frame.</li>
 *   <li>RX small ({@code add_recvbuf_small}): one writable descriptor of
 *       {@code hdr_len + GOOD_PACKET_LEN} at {@code VIRTNET_RX_PAD} into a buffer whose tail
 *       holds {@code skb_shared_info} (build_skb).</li>
 *   <li>RX big ({@code add_recvbuf_big}): header descriptor, the rest of the first page, then
 *       {@code MAX_SKB_FRAGS} whole pages: 19 writable descriptors.</li>
 *   <li>RX mergeable ({@code add_recvbuf_mergeable}): one page-sized writable descriptor after a
 *       headroom, leaving tailroom for {@code skb_shared_info}.</li>
 * </ul>
 */
public final class NetBufferLayout {
    /** {@code sizeof(struct virtio_net_hdr_mrg_rxbuf)}: VERSION_1 or MRG_RXBUF. */
    public static final int HDR_LEN = 12;
    /** {@code sizeof(struct virtio_net_hdr)}: legacy without MRG_RXBUF. */
    public static final int HDR_LEN_LEGACY = 10;
    /** {@code sizeof(struct padded_vnet_hdr)}, used by the big-packet layout. */
    public static final int PADDED_HDR_LEN = 16;
    public static final int PAGE_SIZE = 4096;
    public static final int CACHE_LINE = 64;
    /** {@code NET_SKB_PAD}. */
    public static final int NET_SKB_PAD = 64;
    /** {@code NET_IP_ALIGN} on x86-64 (0; 2 on some other architectures). */
    public static final int NET_IP_ALIGN = 0;
    /** {@code VIRTNET_RX_PAD}. */
    public static final int RX_PAD = NET_IP_ALIGN + NET_SKB_PAD;
    /** {@code ETH_HLEN + VLAN_HLEN + ETH_DATA_LEN}. */
    public static final int GOOD_PACKET_LEN = 14 + 4 + 1500;
    /** {@code SKB_DATA_ALIGN(sizeof(struct skb_shared_info))} on x86-64. */
    public static final int SKB_SHARED_INFO = 320;
    /** {@code MAX_SKB_FRAGS}. */
    public static final int MAX_SKB_FRAGS = 17;
    /** Descriptors of a big RX buffer. */
    public static final int BIG_DESCRIPTORS = MAX_SKB_FRAGS + 2;
    /** TX headroom the frame pool leaves in front of a frame (room for the header and an encapsulation). */
    public static final int TX_HEADROOM = 128;

    private NetBufferLayout() {
    }

    static int align(int v, int a) {
        return (v + a - 1) & -a;
    }

    /** Bytes of one TX buffer: headroom, frame, tailroom for skb_shared_info, cache-line aligned. */
    public static int txBufferSize(int maxFrame) {
        return align(TX_HEADROOM + maxFrame, CACHE_LINE) + SKB_SHARED_INFO;
    }

    /**
     * TX with the header inline: the frame starts at {@code bufGpa + TX_HEADROOM}, the header
     * sits just before it. The caller writes the header at {@link #txInlineHeaderGpa}.
     */
    public static int txInline(long bufGpa, int frameLen, int hdrLen, long[] addrs, int[] lens) {
        addrs[0] = bufGpa + TX_HEADROOM - hdrLen;
        lens[0] = hdrLen + frameLen;
        return 1;
    }

    /** Where the inline header goes. */
    public static long txInlineHeaderGpa(long bufGpa, int hdrLen) {
        return bufGpa + TX_HEADROOM - hdrLen;
    }

    /** Where the frame goes in a TX buffer (both layouts). */
    public static long txFrameGpa(long bufGpa) {
        return bufGpa + TX_HEADROOM;
    }

    /** Legacy TX: header as its own descriptor (here in the headroom's first bytes), then the frame. */
    public static int txSeparateHeader(long bufGpa, int frameLen, int hdrLen, long[] addrs, int[] lens) {
        addrs[0] = bufGpa;
        lens[0] = hdrLen;
        addrs[1] = bufGpa + TX_HEADROOM;
        lens[1] = frameLen;
        return 2;
    }

    /** Bytes of a small RX buffer: pad + header + packet, then aligned skb_shared_info. */
    public static int rxSmallBufferSize(int hdrLen) {
        return align(RX_PAD + hdrLen + GOOD_PACKET_LEN, CACHE_LINE) + SKB_SHARED_INFO;
    }

    public static int rxSmall(long bufGpa, int hdrLen, long[] addrs, int[] lens) {
        addrs[0] = bufGpa + RX_PAD;
        lens[0] = hdrLen + GOOD_PACKET_LEN;
        return 1;
    }

    /** Bytes of a big RX buffer: {@code MAX_SKB_FRAGS + 1} pages. */
    public static int rxBigBufferSize() {
        return (MAX_SKB_FRAGS + 1) * PAGE_SIZE;
    }

    /** Big RX buffer over pages starting at {@code pagesGpa} (page aligned). */
    public static int rxBig(long pagesGpa, int hdrLen, long[] addrs, int[] lens) {
        addrs[0] = pagesGpa;
        lens[0] = hdrLen;
        addrs[1] = pagesGpa + PADDED_HDR_LEN;
        lens[1] = PAGE_SIZE - PADDED_HDR_LEN;
        for (int k = 0; k < MAX_SKB_FRAGS; k++) {
            addrs[2 + k] = pagesGpa + (long) (k + 1) * PAGE_SIZE;
            lens[2 + k] = PAGE_SIZE;
        }
        return BIG_DESCRIPTORS;
    }

    /** Bytes of a mergeable RX buffer: one page. */
    public static int rxMergeableBufferSize() {
        return PAGE_SIZE;
    }

    /** Length of a mergeable buffer's descriptor: the page minus headroom and skb_shared_info tailroom. */
    public static int rxMergeableLen() {
        return PAGE_SIZE - NET_SKB_PAD - SKB_SHARED_INFO;
    }

    public static int rxMergeable(long pageGpa, long[] addrs, int[] lens) {
        addrs[0] = pageGpa + NET_SKB_PAD;
        lens[0] = rxMergeableLen();
        return 1;
    }
}
