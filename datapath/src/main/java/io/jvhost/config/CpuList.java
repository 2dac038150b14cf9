package io.jvhost.config;

import java.util.BitSet;

/**
 * The Linux cpu-list syntax ({@code 0-3,8,10-15:2}, as in {@code taskset -c}, cgroup
 * {@code cpuset.cpus} and {@code /proc/PID/status}'s {@code Cpus_allowed_list}): comma-separated
 * CPU numbers and ranges {@code A-B}, a range optionally with a stride {@code A-B:S}. Pure.
 */
public final class CpuList {
    /** Largest CPU number accepted (the kernel's NR_CPUS limit is 8192). */
    public static final int MAX_CPU = 8191;

    private CpuList() {
    }

    /**
     * The CPUs {@code list} names, in ascending order.
     *
     * @throws IllegalArgumentException an empty list, a malformed item, a range running backwards, a
     *                                  stride below 1, or a CPU above {@link #MAX_CPU} (the message
     *                                  names the item)
     */
    public static int[] parse(String list) {
        BitSet cpus = new BitSet();
        if (list == null || list.isBlank()) {
            throw new IllegalArgumentException("empty CPU list");
        }
        for (String raw : list.split(",", -1)) {
            String item = raw.strip();
            if (item.isEmpty()) {
                throw new IllegalArgumentException("empty item in CPU list '" + list + "'");
            }
            int stride = 1;
            String range = item;
            int colon = item.indexOf(':');
            if (colon >= 0) {
                range = item.substring(0, colon);
                stride = number(item.substring(colon + 1), item);
                if (stride < 1 || range.indexOf('-') < 0) {
                    throw new IllegalArgumentException("bad stride in CPU list item '" + item + "'");
                }
            }
            int dash = range.indexOf('-');
            int first = number(dash < 0 ? range : range.substring(0, dash), item);
            int last = dash < 0 ? first : number(range.substring(dash + 1), item);
            if (last < first) {
                throw new IllegalArgumentException("CPU range '" + item + "' runs backwards");
            }
            for (int c = first; c <= last; c += stride) {
                cpus.set(c);
            }
        }
        return cpus.stream().toArray();
    }

    private static int number(String s, String item) {
        String t = s.strip();
        if (t.isEmpty() || !t.chars().allMatch(Character::isDigit) || t.length() > 5) {
            throw new IllegalArgumentException("'" + item + "' is not a CPU number or range");
        }
        int n = Integer.parseInt(t);
        if (n > MAX_CPU) {
            throw new IllegalArgumentException("CPU " + n + " in '" + item + "' is above " + MAX_CPU);
        }
        return n;
    }

    /** {@code cpus} in the canonical form ({@code 0-3,8}). */
    public static String format(int[] cpus) {
        StringBuilder b = new StringBuilder();
        int i = 0;
        while (i < cpus.length) {
            int j = i;
            while (j + 1 < cpus.length && cpus[j + 1] == cpus[j] + 1) {
                j++;
            }
            if (b.length() > 0) {
                b.append(',');
            }
            b.append(cpus[i]);
            if (j > i) {
                b.append('-').append(cpus[j]);
            }
            i = j + 1;
        }
        return b.toString();
    }
}
