package io.jvhost.vhostuser;

import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Descriptor of vhost-user messages (QEMU docs/interop/vhost-user.rst): header and payload
 * layouts as byte offsets, request codes, flag bits, protocol feature bits. The spec says "machine
 * native byte order"; jvhost runs on little-endian hosts (x86-64, aarch64) only, so the layouts are
 * explicitly little-endian and the same code speaks the protocol on both ends.
 *
 * <pre>
 * header:  request u32 | flags u32 | size u32 | payload[size]
 * </pre>
 */
public final class VhostUserMessage {
    private VhostUserMessage() {
    }

    public static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    // ---- header ----
    public static final int REQUEST_OFFSET = 0;
    public static final int FLAGS_OFFSET = 4;
    public static final int SIZE_OFFSET = 8;
    public static final int HEADER_SIZE = 12;

    /** Lower two bits of flags: protocol version. */
    public static final int FLAGS_VERSION_MASK = 0x3;
    public static final int VERSION = 0x1;
    /** Set on every reply from the back-end. */
    public static final int FLAG_REPLY = 0x4;
    /** REPLY_ACK: the front-end wants a u64 status reply (0 = success). */
    public static final int FLAG_NEED_REPLY = 0x8;

    /** At most this many fds travel with one message (SCM_RIGHTS). */
    public static final int MAX_FDS = 8;

    // ---- payload: u64 ----
    public static final int U64_SIZE = 8;
    /** SET_VRING_KICK/CALL/ERR: bits 0-7 of the u64 are the vring index. */
    public static final long VRING_IDX_MASK = 0xff;
    /** SET_VRING_KICK/CALL/ERR: bit 8 says no fd is attached (kick: poll the ring). */
    public static final long VRING_NOFD_MASK = 0x100;

    // ---- payload: SET_LOG_BASE (VhostUserLog) ----
    public static final int LOG_MMAP_SIZE_OFFSET = 0;
    public static final int LOG_MMAP_OFFSET_OFFSET = 8;
    public static final int LOG_SIZE = 16;

    // ---- payload: vring state ----
    public static final int STATE_INDEX_OFFSET = 0;
    public static final int STATE_NUM_OFFSET = 4;
    public static final int STATE_SIZE = 8;

    // ---- payload: vring address ----
    public static final int ADDR_INDEX_OFFSET = 0;
    public static final int ADDR_FLAGS_OFFSET = 4;
    public static final int ADDR_DESC_OFFSET = 8;
    public static final int ADDR_USED_OFFSET = 16;
    public static final int ADDR_AVAIL_OFFSET = 24;
    public static final int ADDR_LOG_OFFSET = 32;
    public static final int ADDR_SIZE = 40;
    /** vring address flag (VHOST_VRING_F_LOG): log used-ring writes at the ring's log address. */
    public static final int VRING_F_LOG = 0x1;

    // ---- payload: memory regions (SET_MEM_TABLE) ----
    public static final int MEM_NREGIONS_OFFSET = 0;
    public static final int MEM_PADDING_OFFSET = 4;
    public static final int MEM_REGIONS_OFFSET = 8;
    /** SET_MEM_TABLE carries at most 8 regions (one fd each). */
    public static final int MEM_MAX_REGIONS = 8;

    // ---- one region (inside MEM table, and after 8 bytes of padding in ADD/REM_MEM_REG) ----
    public static final int REGION_GPA_OFFSET = 0;
    public static final int REGION_SIZE_OFFSET = 8;
    public static final int REGION_UADDR_OFFSET = 16;
    public static final int REGION_MMAP_OFFSET_OFFSET = 24;
    public static final int REGION_SIZE = 32;
    /** ADD_MEM_REG / REM_MEM_REG: u64 padding then one region. */
    public static final int SINGLE_REGION_OFFSET = 8;
    public static final int SINGLE_REGION_SIZE = SINGLE_REGION_OFFSET + REGION_SIZE;

    // ---- payload: device config space ----
    public static final int CONFIG_OFFSET_OFFSET = 0;
    public static final int CONFIG_SIZE_OFFSET = 4;
    public static final int CONFIG_FLAGS_OFFSET = 8;
    public static final int CONFIG_PAYLOAD_OFFSET = 12;
    /** QEMU's VHOST_USER_MAX_CONFIG_SIZE. */
    public static final int CONFIG_MAX_SIZE = 256;
    public static final int CONFIG_FLAG_WRITABLE = 0;
    public static final int CONFIG_FLAG_MIGRATION = 1;

    /** Largest payload of any message (config header + 256 bytes); larger sizes are rejected outright. */
    public static final int MAX_PAYLOAD = CONFIG_PAYLOAD_OFFSET + CONFIG_MAX_SIZE;

    // ---- front-end requests ----
    public static final int GET_FEATURES = 1;
    public static final int SET_FEATURES = 2;
    public static final int SET_OWNER = 3;
    public static final int RESET_OWNER = 4;
    public static final int SET_MEM_TABLE = 5;
    public static final int SET_LOG_BASE = 6;
    public static final int SET_LOG_FD = 7;
    public static final int SET_VRING_NUM = 8;
    public static final int SET_VRING_ADDR = 9;
    public static final int SET_VRING_BASE = 10;
    public static final int GET_VRING_BASE = 11;
    public static final int SET_VRING_KICK = 12;
    public static final int SET_VRING_CALL = 13;
    public static final int SET_VRING_ERR = 14;
    public static final int GET_PROTOCOL_FEATURES = 15;
    public static final int SET_PROTOCOL_FEATURES = 16;
    public static final int GET_QUEUE_NUM = 17;
    public static final int SET_VRING_ENABLE = 18;
    public static final int SEND_RARP = 19;
    public static final int NET_SET_MTU = 20;
    public static final int SET_BACKEND_REQ_FD = 21;
    public static final int IOTLB_MSG = 22;
    public static final int SET_VRING_ENDIAN = 23;
    public static final int GET_CONFIG = 24;
    public static final int SET_CONFIG = 25;
    public static final int RESET_DEVICE = 34;
    public static final int VRING_KICK = 35;
    public static final int GET_MAX_MEM_SLOTS = 36;
    public static final int ADD_MEM_REG = 37;
    public static final int REM_MEM_REG = 38;
    public static final int SET_STATUS = 39;
    public static final int GET_STATUS = 40;

    // ---- protocol feature bits ----
    public static final int PROTOCOL_F_MQ = 0;
    public static final int PROTOCOL_F_LOG_SHMFD = 1;
    public static final int PROTOCOL_F_RARP = 2;
    public static final int PROTOCOL_F_REPLY_ACK = 3;
    public static final int PROTOCOL_F_MTU = 4;
    public static final int PROTOCOL_F_BACKEND_REQ = 5;
    public static final int PROTOCOL_F_CONFIG = 9;
    public static final int PROTOCOL_F_RESET_DEVICE = 13;
    public static final int PROTOCOL_F_INBAND_NOTIFICATIONS = 14;
    public static final int PROTOCOL_F_CONFIGURE_MEM_SLOTS = 15;
    public static final int PROTOCOL_F_STATUS = 16;

    /** Protocol feature name → bit, for the CLI and logs. Only the ones jvhost implements. */
    public static final Map<String, Integer> PROTOCOL_NAMES;

    static {
        Map<String, Integer> m = new LinkedHashMap<>();
        m.put("proto-mq", PROTOCOL_F_MQ);
        m.put("proto-log-shmfd", PROTOCOL_F_LOG_SHMFD);
        m.put("proto-rarp", PROTOCOL_F_RARP);
        m.put("proto-reply-ack", PROTOCOL_F_REPLY_ACK);
        m.put("proto-mtu", PROTOCOL_F_MTU);
        m.put("proto-config", PROTOCOL_F_CONFIG);
        m.put("proto-reset-device", PROTOCOL_F_RESET_DEVICE);
        m.put("proto-configure-mem-slots", PROTOCOL_F_CONFIGURE_MEM_SLOTS);
        m.put("proto-status", PROTOCOL_F_STATUS);
        PROTOCOL_NAMES = Collections.unmodifiableMap(m);
    }

    /** Protocol features jvhost implements. */
    public static final long PROTOCOL_SUPPORTED = PROTOCOL_NAMES.values().stream().mapToLong(b -> 1L << b)
            .reduce(0L, (a, b) -> a | b);

    /** Name of a request code for log lines. */
    public static String requestName(int request) {
        return switch (request) {
            case GET_FEATURES -> "GET_FEATURES";
            case SET_FEATURES -> "SET_FEATURES";
            case SET_OWNER -> "SET_OWNER";
            case RESET_OWNER -> "RESET_OWNER";
            case SET_MEM_TABLE -> "SET_MEM_TABLE";
            case SET_LOG_BASE -> "SET_LOG_BASE";
            case SET_LOG_FD -> "SET_LOG_FD";
            case SET_VRING_NUM -> "SET_VRING_NUM";
            case SET_VRING_ADDR -> "SET_VRING_ADDR";
            case SET_VRING_BASE -> "SET_VRING_BASE";
            case GET_VRING_BASE -> "GET_VRING_BASE";
            case SET_VRING_KICK -> "SET_VRING_KICK";
            case SET_VRING_CALL -> "SET_VRING_CALL";
            case SET_VRING_ERR -> "SET_VRING_ERR";
            case GET_PROTOCOL_FEATURES -> "GET_PROTOCOL_FEATURES";
            case SET_PROTOCOL_FEATURES -> "SET_PROTOCOL_FEATURES";
            case GET_QUEUE_NUM -> "GET_QUEUE_NUM";
            case SET_VRING_ENABLE -> "SET_VRING_ENABLE";
            case SEND_RARP -> "SEND_RARP";
            case NET_SET_MTU -> "NET_SET_MTU";
            case SET_BACKEND_REQ_FD -> "SET_BACKEND_REQ_FD";
            case IOTLB_MSG -> "IOTLB_MSG";
            case SET_VRING_ENDIAN -> "SET_VRING_ENDIAN";
            case GET_CONFIG -> "GET_CONFIG";
            case SET_CONFIG -> "SET_CONFIG";
            case RESET_DEVICE -> "RESET_DEVICE";
            case VRING_KICK -> "VRING_KICK";
            case GET_MAX_MEM_SLOTS -> "GET_MAX_MEM_SLOTS";
            case ADD_MEM_REG -> "ADD_MEM_REG";
            case REM_MEM_REG -> "REM_MEM_REG";
            case SET_STATUS -> "SET_STATUS";
            case GET_STATUS -> "GET_STATUS";
            default -> "UNKNOWN(" + request + ")";
        };
    }

    /** Whether a request has its own reply body (so NEED_REPLY adds no extra ack). */
    public static boolean hasReply(int request) {
        return switch (request) {
            case GET_FEATURES, GET_PROTOCOL_FEATURES, GET_VRING_BASE, GET_QUEUE_NUM, GET_CONFIG, GET_MAX_MEM_SLOTS,
                 GET_STATUS -> true;
            default -> false;
        };
    }
}
