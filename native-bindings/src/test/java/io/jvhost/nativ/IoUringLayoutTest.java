package io.jvhost.nativ;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.jvhost.nativ.gen.Linux;
import io.jvhost.nativ.gen.io_cqring_offsets;
import io.jvhost.nativ.gen.io_sqring_offsets;
import io.jvhost.nativ.gen.io_uring_cqe;
import io.jvhost.nativ.gen.io_uring_params;
import io.jvhost.nativ.gen.io_uring_sqe;
import java.lang.foreign.MemoryLayout;
import org.junit.jupiter.api.Test;

/**
 * {@link IoUring}'s hand-written offsets and constants against the jextract layouts of
 * {@code linux/io_uring.h} (which {@code LayoutConformanceTest} checks against gcc). IoUring keeps
 * its own {@code static final} numbers because {@link IoUring#prepare} writes several SQE fields
 * with one 64-bit store each, which only a fixed layout allows; this test is what ties those
 * numbers, and the packing assumptions, to the kernel's header.
 */
class IoUringLayoutTest {

    @Test
    void sqeOffsetsMatchTheKernelHeader() {
        assertEquals(io_uring_sqe.sizeof(), IoUring.SQE_SIZE, "sizeof(struct io_uring_sqe)");
        field("opcode", io_uring_sqe.opcode$offset(), io_uring_sqe.opcode$layout(), IoUring.SQE_OPCODE, 1);
        field("flags", io_uring_sqe.flags$offset(), io_uring_sqe.flags$layout(), IoUring.SQE_FLAGS, 1);
        field("ioprio", io_uring_sqe.ioprio$offset(), io_uring_sqe.ioprio$layout(), IoUring.SQE_IOPRIO, 2);
        field("fd", io_uring_sqe.fd$offset(), io_uring_sqe.fd$layout(), IoUring.SQE_FD, 4);
        field("off", io_uring_sqe.off$offset(), io_uring_sqe.off$layout(), IoUring.SQE_OFF, 8);
        field("addr", io_uring_sqe.addr$offset(), io_uring_sqe.addr$layout(), IoUring.SQE_ADDR, 8);
        field("len", io_uring_sqe.len$offset(), io_uring_sqe.len$layout(), IoUring.SQE_LEN, 4);
        field("rw_flags", io_uring_sqe.rw_flags$offset(), io_uring_sqe.rw_flags$layout(), IoUring.SQE_RW_FLAGS, 4);
        field("user_data", io_uring_sqe.user_data$offset(), io_uring_sqe.user_data$layout(), IoUring.SQE_USER_DATA, 8);
        // SQE_TAIL starts the 24 bytes prepare() zeroes: buf_index is the first member after user_data.
        assertEquals(io_uring_sqe.buf_index$offset(), IoUring.SQE_TAIL, "io_uring_sqe.buf_index (SQE_TAIL)");
    }

    /** The stores prepare() merges: each pair of fields must be adjacent and fill one aligned 8 bytes. */
    @Test
    void sqeFieldsPrepareWritesTogetherAreAdjacent() {
        // opcode | flags << 8 | ioprio << 16 | fd << 32: one little-endian 64-bit store at offset 0.
        assertEquals(0, io_uring_sqe.opcode$offset());
        assertEquals(io_uring_sqe.opcode$offset() + 1, io_uring_sqe.flags$offset());
        assertEquals(io_uring_sqe.flags$offset() + 1, io_uring_sqe.ioprio$offset());
        assertEquals(io_uring_sqe.ioprio$offset() + 2, io_uring_sqe.fd$offset());
        assertEquals(8, io_uring_sqe.fd$offset() + 4);
        // len | rw_flags << 32: one 64-bit store, 8-aligned.
        assertEquals(0, io_uring_sqe.len$offset() % 8);
        assertEquals(io_uring_sqe.len$offset() + 4, io_uring_sqe.rw_flags$offset());
        // The three zeroed words reach exactly to the end of the 64-byte SQE.
        assertEquals(io_uring_sqe.sizeof(), IoUring.SQE_TAIL + 24);
    }

    @Test
    void cqeOffsetsMatchTheKernelHeader() {
        assertEquals(io_uring_cqe.sizeof(), IoUring.CQE_SIZE, "sizeof(struct io_uring_cqe)");
        field("user_data", io_uring_cqe.user_data$offset(), io_uring_cqe.user_data$layout(), IoUring.CQE_USER_DATA, 8);
        field("res", io_uring_cqe.res$offset(), io_uring_cqe.res$layout(), IoUring.CQE_RES, 4);
        field("flags", io_uring_cqe.flags$offset(), io_uring_cqe.flags$layout(), IoUring.CQE_FLAGS, 4);
    }

    @Test
    void paramsAndRingOffsetsMatchTheKernelHeader() {
        assertEquals(io_uring_params.sizeof(), IoUring.PARAMS_SIZE, "sizeof(struct io_uring_params)");
        assertEquals(io_uring_params.sq_entries$offset(), IoUring.P_SQ_ENTRIES, "io_uring_params.sq_entries");
        assertEquals(io_uring_params.cq_entries$offset(), IoUring.P_CQ_ENTRIES, "io_uring_params.cq_entries");
        assertEquals(io_uring_params.flags$offset(), IoUring.P_FLAGS, "io_uring_params.flags");
        assertEquals(io_uring_params.features$offset(), IoUring.P_FEATURES, "io_uring_params.features");
        assertEquals(io_uring_params.sq_off$offset(), IoUring.P_SQ_OFF, "io_uring_params.sq_off");
        assertEquals(io_uring_params.cq_off$offset(), IoUring.P_CQ_OFF, "io_uring_params.cq_off");
        // RO_* are read from both offset structs: they must agree with each other and with IoUring.
        assertEquals(io_sqring_offsets.head$offset(), IoUring.RO_HEAD, "io_sqring_offsets.head");
        assertEquals(io_cqring_offsets.head$offset(), IoUring.RO_HEAD, "io_cqring_offsets.head");
        assertEquals(io_sqring_offsets.tail$offset(), IoUring.RO_TAIL, "io_sqring_offsets.tail");
        assertEquals(io_cqring_offsets.tail$offset(), IoUring.RO_TAIL, "io_cqring_offsets.tail");
        assertEquals(io_sqring_offsets.ring_mask$offset(), IoUring.RO_RING_MASK, "io_sqring_offsets.ring_mask");
        assertEquals(io_cqring_offsets.ring_mask$offset(), IoUring.RO_RING_MASK, "io_cqring_offsets.ring_mask");
        assertEquals(io_sqring_offsets.ring_entries$offset(), IoUring.RO_RING_ENTRIES, "io_sqring_offsets.ring_entries");
        assertEquals(io_cqring_offsets.ring_entries$offset(), IoUring.RO_RING_ENTRIES, "io_cqring_offsets.ring_entries");
        assertEquals(io_sqring_offsets.array$offset(), IoUring.SQO_ARRAY, "io_sqring_offsets.array");
        assertEquals(io_cqring_offsets.cqes$offset(), IoUring.CQO_CQES, "io_cqring_offsets.cqes");
        // IoUring reads every params and offsets field as a 32-bit word.
        for (MemoryLayout m : new MemoryLayout[] {io_uring_params.sq_entries$layout(), io_uring_params.cq_entries$layout(),
                io_uring_params.flags$layout(), io_uring_params.features$layout(), io_sqring_offsets.head$layout(),
                io_sqring_offsets.tail$layout(), io_sqring_offsets.ring_mask$layout(), io_sqring_offsets.array$layout(),
                io_cqring_offsets.head$layout(), io_cqring_offsets.tail$layout(), io_cqring_offsets.ring_mask$layout(),
                io_cqring_offsets.cqes$layout()}) {
            assertEquals(4, m.byteSize(), m.toString());
        }
    }

    @Test
    void constantsMatchTheKernelHeader() {
        assertEquals(Linux.SYS_io_uring_setup(), IoUring.SYS_IO_URING_SETUP, "SYS_io_uring_setup");
        assertEquals(Linux.SYS_io_uring_enter(), IoUring.SYS_IO_URING_ENTER, "SYS_io_uring_enter");
        assertEquals(Linux.SYS_io_uring_register(), IoUring.SYS_IO_URING_REGISTER, "SYS_io_uring_register");
        assertEquals(Linux.IORING_REGISTER_FILES(), IoUring.REGISTER_FILES, "IORING_REGISTER_FILES");
        assertEquals(Linux.IORING_UNREGISTER_FILES(), IoUring.UNREGISTER_FILES, "IORING_UNREGISTER_FILES");
        assertEquals(Linux.IORING_OP_NOP(), IoUring.OP_NOP, "IORING_OP_NOP");
        assertEquals(Linux.IORING_OP_READV(), IoUring.OP_READV, "IORING_OP_READV");
        assertEquals(Linux.IORING_OP_WRITEV(), IoUring.OP_WRITEV, "IORING_OP_WRITEV");
        assertEquals(Linux.IORING_OP_READ(), IoUring.OP_READ, "IORING_OP_READ");
        assertEquals(Linux.IORING_OP_WRITE(), IoUring.OP_WRITE, "IORING_OP_WRITE");
        assertEquals(Linux.IOSQE_FIXED_FILE(), IoUring.SQE_FIXED_FILE, "IOSQE_FIXED_FILE");
        assertEquals(Linux.IOSQE_IO_LINK(), IoUring.SQE_IO_LINK, "IOSQE_IO_LINK");
        assertEquals(Linux.RWF_NOWAIT(), IoUring.RWF_NOWAIT, "RWF_NOWAIT");
        assertEquals(Linux.IORING_ENTER_GETEVENTS(), IoUring.ENTER_GETEVENTS, "IORING_ENTER_GETEVENTS");
        assertEquals(Linux.IORING_SETUP_SUBMIT_ALL(), IoUring.SETUP_SUBMIT_ALL, "IORING_SETUP_SUBMIT_ALL");
        assertEquals(Linux.IORING_SETUP_COOP_TASKRUN(), IoUring.SETUP_COOP_TASKRUN, "IORING_SETUP_COOP_TASKRUN");
        assertEquals(Linux.IORING_FEAT_SINGLE_MMAP(), IoUring.FEAT_SINGLE_MMAP, "IORING_FEAT_SINGLE_MMAP");
        assertEquals(Linux.IORING_OFF_SQ_RING(), IoUring.OFF_SQ_RING, "IORING_OFF_SQ_RING");
        assertEquals(Linux.IORING_OFF_CQ_RING(), IoUring.OFF_CQ_RING, "IORING_OFF_CQ_RING");
        assertEquals(Linux.IORING_OFF_SQES(), IoUring.OFF_SQES, "IORING_OFF_SQES");
    }

    private static void field(String name, long genOffset, MemoryLayout genLayout, long handOffset, long handWidth) {
        assertEquals(genOffset, handOffset, "offset of " + name);
        assertEquals(genLayout.byteSize(), handWidth, "width of " + name + " as IoUring accesses it");
    }
}
