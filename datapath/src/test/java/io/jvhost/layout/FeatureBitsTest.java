package io.jvhost.layout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.jvhost.nativ.gen.Linux;
import io.jvhost.net.Offloads;
import io.jvhost.virtio.VirtioFeatures;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;

/**
 * Every feature-bit number the datapath defines ({@link VirtioFeatures}) and the tap offload flags
 * ({@link Offloads}), against the kernel header constant of the same
 * meaning ({@code linux/virtio_config.h}, {@code virtio_ring.h}, {@code virtio_net.h},
 * {@code vhost_types.h}, {@code if_tun.h} as jextract generated them). Each class is checked
 * field by field through reflection, so a bit added later is checked too: it must map to a kernel
 * constant by the class's naming rule or be listed below as having none, with the reason.
 */
class FeatureBitsTest {

    @Test
    void virtioFeatures() {
        assertBitsMatchKernel(VirtioFeatures.class, name -> switch (name) {
            case "F_LOG_ALL" -> "VHOST_F_LOG_ALL";
            default -> "VIRTIO_" + name; // NET_F_*, F_*, RING_F_*
        }, Map.of("VHOST_USER_F_PROTOCOL_FEATURES",
                "vhost-user's own bit (QEMU docs/interop/vhost-user.rst), in no kernel header"));
    }

    @Test
    void tapOffloadFlags() {
        assertBitsMatchKernel(Offloads.class, UnaryOperator.identity(),
                Map.of("TUN_F_USO", "TUN_F_USO4 | TUN_F_USO6 (the kernel takes them only as a pair): checked through both"));
    }

    /**
     * Checks each public static final int of {@code cls} against {@code Linux.<kernelName(field)>()}.
     * {@code noTwin} maps the fields that have no kernel constant to the reason.
     */
    private static void assertBitsMatchKernel(Class<?> cls, UnaryOperator<String> kernelName, Map<String, String> noTwin) {
        List<String> problems = new ArrayList<>();
        int checked = 0;
        for (Field f : cls.getDeclaredFields()) {
            int mod = f.getModifiers();
            if (!Modifier.isPublic(mod) || !Modifier.isStatic(mod) || !Modifier.isFinal(mod) || f.getType() != int.class) {
                continue;
            }
            if (noTwin.containsKey(f.getName())) {
                continue;
            }
            String kernel = kernelName.apply(f.getName());
            try {
                Method m = Linux.class.getMethod(kernel);
                long expected = ((Number) m.invoke(null)).longValue();
                long actual = f.getInt(null);
                if (expected != actual) {
                    problems.add(cls.getSimpleName() + "." + f.getName() + " = " + actual + ", but " + kernel + " = " + expected);
                }
                checked++;
            } catch (NoSuchMethodException e) {
                problems.add(cls.getSimpleName() + "." + f.getName() + ": no Linux." + kernel + "() (add it to"
                        + " ffi-headers/symbols.txt, or list the field here as having no kernel twin)");
            } catch (ReflectiveOperationException e) {
                problems.add(cls.getSimpleName() + "." + f.getName() + ": " + e);
            }
        }
        if (!problems.isEmpty()) {
            fail(problems.size() + " feature bit(s) disagree with the kernel headers:\n  " + String.join("\n  ", problems));
        }
        assertTrue(checked > 0, "no int constant found in " + cls.getName());
        for (String name : noTwin.keySet()) {
            try {
                assertEquals(int.class, cls.getDeclaredField(name).getType(), name);
            } catch (NoSuchFieldException e) {
                fail(cls.getSimpleName() + "." + name + " is listed as having no kernel twin but does not exist");
            }
        }
    }
}
