package io.jvhost.vhostuser;

import io.jvhost.virtio.VirtioFeatures;
import java.util.Locale;

/**
 * Which virtio and vhost-user protocol features a device offers. Starts from everything jvhost
 * supports; each can be switched off (the CLI's {@code --disable=NAME,...}). Immutable.
 *
 * @param virtio   virtio feature mask (bits of {@link VirtioFeatures})
 * @param protocol protocol feature mask (bits of {@link VhostUserMessage} {@code PROTOCOL_F_*})
 */
public record FeatureSet(long virtio, long protocol) {

    /** Everything supported. */
    public static FeatureSet all() {
        return new FeatureSet(VirtioFeatures.SUPPORTED, VhostUserMessage.PROTOCOL_SUPPORTED);
    }

    /** Switches one feature off by its name ({@link VirtioFeatures#NAMES} or a protocol feature name). */
    public FeatureSet without(String name) {
        String n = name.trim().toLowerCase(Locale.ROOT);
        Integer bit = VirtioFeatures.NAMES.get(n);
        if (bit != null) {
            return new FeatureSet(virtio & ~(1L << bit), protocol);
        }
        Integer pbit = VhostUserMessage.PROTOCOL_NAMES.get(n);
        if (pbit != null) {
            return new FeatureSet(virtio, protocol & ~(1L << pbit));
        }
        throw new IllegalArgumentException("unknown feature '" + name + "'; known: " + VirtioFeatures.NAMES.keySet()
                + " and protocol " + VhostUserMessage.PROTOCOL_NAMES.keySet());
    }

    /** Switches off each comma-separated name; empty or null switches off nothing. */
    public FeatureSet without(String... names) {
        FeatureSet f = this;
        for (String csv : names) {
            if (csv == null) {
                continue;
            }
            for (String n : csv.split(",")) {
                if (!n.isBlank()) {
                    f = f.without(n);
                }
            }
        }
        return f;
    }

    public FeatureSet withoutVirtioBits(long mask) {
        return new FeatureSet(virtio & ~mask, protocol);
    }

    public FeatureSet withoutProtocolBits(long mask) {
        return new FeatureSet(virtio, protocol & ~mask);
    }

    public boolean protocolFeatures() {
        return VirtioFeatures.has(virtio, VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES);
    }
}
