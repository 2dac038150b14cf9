package io.jvhost.config;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The Linux cpu-list syntax as taskset, cpusets and /proc write it. */
class CpuListTest {

    @ParameterizedTest
    @CsvSource(delimiter = ';', value = {
        "0;0",
        "0-3;0-3",
        "0-3,8;0-3,8",
        "8,0-3;0-3,8",
        "1,1,1;1",
        "0-3,2-5;0-5",
        "0-7:2;0,2,4,6",
        " 2 , 4-5 ;2,4-5",
        "8191;8191"})
    void parsesAndFormatsCanonically(String list, String canonical) {
        assertEquals(canonical, CpuList.format(CpuList.parse(list)));
    }

    @org.junit.jupiter.api.Test
    void parsesInAscendingOrder() {
        assertArrayEquals(new int[] {0, 1, 2, 3, 8, 10, 12}, CpuList.parse("10-12:2,8,0-3"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"", " ", "a", "1-", "-1", "3-1", "1,,2", "1,", "0-7:0", "4:2", "8192", "1-99999", "0x1", "1.5"})
    void rejectsMalformedLists(String list) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CpuList.parse(list));
        assertEquals(true, e.getMessage() != null && !e.getMessage().isBlank());
    }

    @org.junit.jupiter.api.Test
    void theTunableValidatesAndNormalises() {
        String prop = Configuration.CPUS.property();
        String old = System.getProperty(prop);
        try {
            System.setProperty(prop, Configuration.CPUS.fromFlag("8, 0-3"));
            assertEquals("0-3,8", Configuration.CPUS.get());
        } finally {
            if (old == null) {
                System.clearProperty(prop);
            } else {
                System.setProperty(prop, old);
            }
        }
        assertThrows(IllegalArgumentException.class, () -> Configuration.CPUS.fromFlag("3-1"));
        assertEquals("0", Configuration.WORKERS.fromFlag("0"));
        assertThrows(IllegalArgumentException.class, () -> Configuration.WORKERS.fromFlag("-1"));
    }
}
