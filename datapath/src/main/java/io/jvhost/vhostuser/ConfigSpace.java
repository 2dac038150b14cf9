package io.jvhost.vhostuser;

import static io.jvhost.vhostuser.VhostUserMessage.*;

import io.jvhost.net.VirtioNetConfig;

import java.lang.System.Logger.Level;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The device configuration space over vhost-user (GET_CONFIG / SET_CONFIG, protocol feature
 * CONFIG): {@code virtio_net_config} followed by zeros up to the protocol's 256 bytes. Only the MAC
 * is driver-writable; a write that changes any other byte is refused.
 *
 * <p>Threading: the session's control thread.
 */
final class ConfigSpace {
    private static final System.Logger LOG = System.getLogger(ConfigSpace.class.getName());

    private final String name;
    private final DeviceBackend backend;

    ConfigSpace(String name, DeviceBackend backend) {
        this.name = name;
        this.backend = backend;
    }

    /**
     * GET_CONFIG. A malformed request is answered with an empty payload, the spec's error answer
     * for this message (a rejected request would otherwise leave the front-end waiting).
     *
     * @param offered whether the CONFIG protocol feature is offered
     */
    void get(VhostUserCodec codec, boolean offered) throws VhostUserCodec.StreamException {
        int size = codec.size();
        String bad = null;
        int off = 0;
        int len = 0;
        if (!offered) {
            bad = "CONFIG protocol feature not offered";
        } else if (codec.fdCount() != 0) {
            bad = codec.fdCount() + " fds attached";
        } else if (size < CONFIG_PAYLOAD_OFFSET) {
            bad = "payload size " + size + " shorter than the config header";
        } else {
            off = codec.payloadInt(CONFIG_OFFSET_OFFSET);
            len = codec.payloadInt(CONFIG_SIZE_OFFSET);
            bad = checkRange(off, len, size);
        }
        if (bad != null) {
            LOG.log(Level.WARNING, "{0}: GET_CONFIG rejected: {1}; the front-end gets an empty answer and"
                    + " keeps its defaults (MAC, MTU): check the front-end's version", name, bad);
            codec.reply(0);
            return;
        }
        MemorySegment space = space();
        MemorySegment p = codec.txPayload();
        p.set(U32, CONFIG_OFFSET_OFFSET, off);
        p.set(U32, CONFIG_SIZE_OFFSET, len);
        p.set(U32, CONFIG_FLAGS_OFFSET, codec.payloadInt(CONFIG_FLAGS_OFFSET));
        MemorySegment.copy(space, off, p, CONFIG_PAYLOAD_OFFSET, len);
        codec.reply(CONFIG_PAYLOAD_OFFSET + len);
    }

    /** SET_CONFIG: only the MAC may change. */
    void set(VhostUserCodec codec) throws ProtocolException {
        int size = codec.size();
        if (size < CONFIG_PAYLOAD_OFFSET) {
            throw new ProtocolException("payload size " + size + " shorter than the config header");
        }
        int off = codec.payloadInt(CONFIG_OFFSET_OFFSET);
        int len = codec.payloadInt(CONFIG_SIZE_OFFSET);
        int flags = codec.payloadInt(CONFIG_FLAGS_OFFSET);
        String bad = checkRange(off, len, size);
        if (bad != null) {
            throw new ProtocolException(bad);
        }
        if (flags != CONFIG_FLAG_WRITABLE && flags != CONFIG_FLAG_MIGRATION) {
            throw new ProtocolException("config flags " + Integer.toUnsignedString(flags) + " unknown");
        }
        MemorySegment before = space();
        MemorySegment after = MemorySegment.ofArray(before.toArray(ValueLayout.JAVA_BYTE));
        MemorySegment.copy(codec.payload(), CONFIG_PAYLOAD_OFFSET, after, off, len);
        long firstDiff = before.asSlice(VirtioNetConfig.MAC_LENGTH).mismatch(after.asSlice(VirtioNetConfig.MAC_LENGTH));
        if (firstDiff >= 0) {
            throw new ProtocolException("write to read-only config byte " + (firstDiff + VirtioNetConfig.MAC_LENGTH));
        }
        if (before.asSlice(0, VirtioNetConfig.MAC_LENGTH).mismatch(after.asSlice(0, VirtioNetConfig.MAC_LENGTH)) >= 0) {
            byte[] mac = after.asSlice(0, VirtioNetConfig.MAC_LENGTH).toArray(ValueLayout.JAVA_BYTE);
            if (!backend.setMac(mac)) {
                throw new ProtocolException("device refused MAC " + VirtioNetConfig.formatMac(mac));
            }
        }
    }

    private static String checkRange(int off, int len, int payloadSize) {
        if (len < 0 || len > CONFIG_MAX_SIZE || payloadSize != CONFIG_PAYLOAD_OFFSET + len) {
            return "config size " + Integer.toUnsignedString(len) + " does not match payload size " + payloadSize;
        }
        if (off < 0 || off > CONFIG_MAX_SIZE - len) {
            return "config range " + Integer.toUnsignedString(off) + "+" + len + " outside the config space";
        }
        return null;
    }

    /** The device config space: virtio_net_config followed by zeros up to the protocol's maximum. */
    private MemorySegment space() {
        MemorySegment space = MemorySegment.ofArray(new byte[CONFIG_MAX_SIZE]);
        backend.config().writeTo(space);
        return space;
    }
}
