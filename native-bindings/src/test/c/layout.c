/*
 * Layout-conformance probe: compiled by gcc over ffi-headers/jvhost.h (the header jextract read) and
 * run by io.jvhost.nativ.gen.LayoutConformanceTest, which compares every line with the generated
 * Java layouts and constants. Output, one item per line:
 *   sizeof   <struct>         <bytes>   <struct> = struct/union tag, or typedef name (TYPEDEF)
 *   alignof  <struct>         <bytes>
 *   offsetof <struct>.<path>  <bytes>   path = Java layout member names joined by '.'
 *   fieldsize <struct>.<path> <bytes>   (not for flexible array members)
 *   const    <NAME>           <value as signed 64-bit>
 * The <path> names the Java layout members; the C expression beside it may use glibc's alias
 * macros (ifr_name, ifr_mtu, ...), so the test also checks that those aliases land where the Java
 * path does. Every --include-constant in ffi-headers/symbols.txt must appear here (the test
 * enforces it), and so must every member of every struct it includes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "jvhost.h"

#define STRUCT(tag) \
    printf("sizeof %s %zu\nalignof %s %zu\n", #tag, sizeof(struct tag), #tag, _Alignof(struct tag))
#define UNION(tag) \
    printf("sizeof %s %zu\nalignof %s %zu\n", #tag, sizeof(union tag), #tag, _Alignof(union tag))
/* A member: its offset and its size. */
#define FIELD(tag, path, member) \
    printf("offsetof %s.%s %zu\nfieldsize %s.%s %zu\n", #tag, path, offsetof(struct tag, member), \
           #tag, path, sizeof(((struct tag *) 0)->member))
#define UFIELD(tag, path, member) \
    printf("offsetof %s.%s %zu\nfieldsize %s.%s %zu\n", #tag, path, offsetof(union tag, member), \
           #tag, path, sizeof(((union tag *) 0)->member))
/* A flexible array member: its offset only (it has no size). */
#define FLEX(tag, path, member) \
    printf("offsetof %s.%s %zu\n", #tag, path, offsetof(struct tag, member))
/* A struct known only by its typedef name (cpu_set_t), or a typedef of a tagged one (epoll_data_t). */
#define TYPEDEF(name) \
    printf("sizeof %s %zu\nalignof %s %zu\n", #name, sizeof(name), #name, _Alignof(name))
#define TFIELD(name, path, member) \
    printf("offsetof %s.%s %zu\nfieldsize %s.%s %zu\n", #name, path, offsetof(name, member), \
           #name, path, sizeof(((name *) 0)->member))
#define CONST(name) printf("const %s %lld\n", #name, (long long) (name))
#define POINTER(name) printf("const %s %lld\n", #name, (long long) (intptr_t) (name))

static void structs(void) {
    STRUCT(iovec);
    FIELD(iovec, "iov_base", iov_base);
    FIELD(iovec, "iov_len", iov_len);

    STRUCT(msghdr);
    FIELD(msghdr, "msg_name", msg_name);
    FIELD(msghdr, "msg_namelen", msg_namelen);
    FIELD(msghdr, "msg_iov", msg_iov);
    FIELD(msghdr, "msg_iovlen", msg_iovlen);
    FIELD(msghdr, "msg_control", msg_control);
    FIELD(msghdr, "msg_controllen", msg_controllen);
    FIELD(msghdr, "msg_flags", msg_flags);

    STRUCT(cmsghdr);
    FIELD(cmsghdr, "cmsg_len", cmsg_len);
    FIELD(cmsghdr, "cmsg_level", cmsg_level);
    FIELD(cmsghdr, "cmsg_type", cmsg_type);
    FLEX(cmsghdr, "__cmsg_data", __cmsg_data);

    STRUCT(sockaddr);
    FIELD(sockaddr, "sa_family", sa_family);
    FIELD(sockaddr, "sa_data", sa_data);

    STRUCT(sockaddr_un);
    FIELD(sockaddr_un, "sun_family", sun_family);
    FIELD(sockaddr_un, "sun_path", sun_path);

    /* glibc names ifreq's members through macros over two unions: check the aliases we use. */
    STRUCT(ifreq);
    FIELD(ifreq, "ifr_ifrn", ifr_ifrn);
    FIELD(ifreq, "ifr_ifrn.ifrn_name", ifr_name);
    FIELD(ifreq, "ifr_ifru", ifr_ifru);
    FIELD(ifreq, "ifr_ifru.ifru_flags", ifr_flags);
    FIELD(ifreq, "ifr_ifru.ifru_mtu", ifr_mtu);
    FIELD(ifreq, "ifr_ifru.ifru_ivalue", ifr_ifindex);
    FIELD(ifreq, "ifr_ifru.ifru_hwaddr", ifr_hwaddr);
    FIELD(ifreq, "ifr_ifru.ifru_hwaddr.sa_data", ifr_hwaddr.sa_data);
    FIELD(ifreq, "ifr_ifru.ifru_newname", ifr_newname);
    FIELD(ifreq, "ifr_ifru.ifru_data", ifr_data);

    STRUCT(ifmap);
    FIELD(ifmap, "mem_start", mem_start);
    FIELD(ifmap, "mem_end", mem_end);
    FIELD(ifmap, "base_addr", base_addr);
    FIELD(ifmap, "irq", irq);
    FIELD(ifmap, "dma", dma);
    FIELD(ifmap, "port", port);

    /* Packed on x86_64 (__EPOLL_PACKED): data sits at offset 4, the struct is 12 bytes. */
    STRUCT(epoll_event);
    FIELD(epoll_event, "events", events);
    FIELD(epoll_event, "data", data);
    FIELD(epoll_event, "data.ptr", data.ptr);
    FIELD(epoll_event, "data.fd", data.fd);
    FIELD(epoll_event, "data.u32", data.u32);
    FIELD(epoll_event, "data.u64", data.u64);

    UNION(epoll_data);
    UFIELD(epoll_data, "ptr", ptr);
    UFIELD(epoll_data, "fd", fd);
    UFIELD(epoll_data, "u32", u32);
    UFIELD(epoll_data, "u64", u64);

    STRUCT(pollfd);
    FIELD(pollfd, "fd", fd);
    FIELD(pollfd, "events", events);
    FIELD(pollfd, "revents", revents);

    STRUCT(virtio_net_hdr);
    FIELD(virtio_net_hdr, "flags", flags);
    FIELD(virtio_net_hdr, "gso_type", gso_type);
    FIELD(virtio_net_hdr, "hdr_len", hdr_len);
    FIELD(virtio_net_hdr, "gso_size", gso_size);
    FIELD(virtio_net_hdr, "csum_start", csum_start);
    FIELD(virtio_net_hdr, "csum_offset", csum_offset);

    STRUCT(virtio_net_hdr_mrg_rxbuf);
    FIELD(virtio_net_hdr_mrg_rxbuf, "hdr", hdr);
    FIELD(virtio_net_hdr_mrg_rxbuf, "hdr.csum_offset", hdr.csum_offset);
    FIELD(virtio_net_hdr_mrg_rxbuf, "num_buffers", num_buffers);

    /* csum_start/csum_offset live in an anonymous struct in an anonymous union: the test finds
       them through jextract's $anon members. */
    STRUCT(virtio_net_hdr_v1);
    FIELD(virtio_net_hdr_v1, "flags", flags);
    FIELD(virtio_net_hdr_v1, "gso_type", gso_type);
    FIELD(virtio_net_hdr_v1, "hdr_len", hdr_len);
    FIELD(virtio_net_hdr_v1, "gso_size", gso_size);
    FIELD(virtio_net_hdr_v1, "csum_start", csum_start);
    FIELD(virtio_net_hdr_v1, "csum_offset", csum_offset);
    FIELD(virtio_net_hdr_v1, "csum", csum);
    FIELD(virtio_net_hdr_v1, "csum.start", csum.start);
    FIELD(virtio_net_hdr_v1, "csum.offset", csum.offset);
    FIELD(virtio_net_hdr_v1, "rsc", rsc);
    FIELD(virtio_net_hdr_v1, "rsc.segments", rsc.segments);
    FIELD(virtio_net_hdr_v1, "rsc.dup_acks", rsc.dup_acks);
    FIELD(virtio_net_hdr_v1, "num_buffers", num_buffers);

    STRUCT(virtio_net_config);
    FIELD(virtio_net_config, "mac", mac);
    FIELD(virtio_net_config, "status", status);
    FIELD(virtio_net_config, "max_virtqueue_pairs", max_virtqueue_pairs);
    FIELD(virtio_net_config, "mtu", mtu);
    FIELD(virtio_net_config, "speed", speed);
    FIELD(virtio_net_config, "duplex", duplex);
    FIELD(virtio_net_config, "rss_max_key_size", rss_max_key_size);
    FIELD(virtio_net_config, "rss_max_indirection_table_length", rss_max_indirection_table_length);
    FIELD(virtio_net_config, "supported_hash_types", supported_hash_types);

    STRUCT(vring_desc);
    FIELD(vring_desc, "addr", addr);
    FIELD(vring_desc, "len", len);
    FIELD(vring_desc, "flags", flags);
    FIELD(vring_desc, "next", next);

    STRUCT(vring_avail);
    FIELD(vring_avail, "flags", flags);
    FIELD(vring_avail, "idx", idx);
    FLEX(vring_avail, "ring", ring);

    STRUCT(vring_used_elem);
    FIELD(vring_used_elem, "id", id);
    FIELD(vring_used_elem, "len", len);

    STRUCT(vring_used);
    FIELD(vring_used, "flags", flags);
    FIELD(vring_used, "idx", idx);
    FLEX(vring_used, "ring", ring);

    STRUCT(vhost_vring_state);
    FIELD(vhost_vring_state, "index", index);
    FIELD(vhost_vring_state, "num", num);

    STRUCT(vhost_vring_addr);
    FIELD(vhost_vring_addr, "index", index);
    FIELD(vhost_vring_addr, "flags", flags);
    FIELD(vhost_vring_addr, "desc_user_addr", desc_user_addr);
    FIELD(vhost_vring_addr, "used_user_addr", used_user_addr);
    FIELD(vhost_vring_addr, "avail_user_addr", avail_user_addr);
    FIELD(vhost_vring_addr, "log_guest_addr", log_guest_addr);

    STRUCT(vhost_vring_file);
    FIELD(vhost_vring_file, "index", index);
    FIELD(vhost_vring_file, "fd", fd);

    STRUCT(vhost_memory_region);
    FIELD(vhost_memory_region, "guest_phys_addr", guest_phys_addr);
    FIELD(vhost_memory_region, "memory_size", memory_size);
    FIELD(vhost_memory_region, "userspace_addr", userspace_addr);
    FIELD(vhost_memory_region, "flags_padding", flags_padding);

    STRUCT(vhost_memory);
    FIELD(vhost_memory, "nregions", nregions);
    FIELD(vhost_memory, "padding", padding);
    FLEX(vhost_memory, "regions", regions);

    STRUCT(vring_packed_desc);
    FIELD(vring_packed_desc, "addr", addr);
    FIELD(vring_packed_desc, "len", len);
    FIELD(vring_packed_desc, "id", id);
    FIELD(vring_packed_desc, "flags", flags);

    STRUCT(vring_packed_desc_event);
    FIELD(vring_packed_desc_event, "off_wrap", off_wrap);
    FIELD(vring_packed_desc_event, "flags", flags);

    /* Most SQE members sit in anonymous unions (and structs inside them): the test reaches them
       through jextract's $anon members, as C does. cmd is a zero-length array (SQE128 only). */
    STRUCT(io_uring_sqe);
    FIELD(io_uring_sqe, "opcode", opcode);
    FIELD(io_uring_sqe, "flags", flags);
    FIELD(io_uring_sqe, "ioprio", ioprio);
    FIELD(io_uring_sqe, "fd", fd);
    FIELD(io_uring_sqe, "off", off);
    FIELD(io_uring_sqe, "addr2", addr2);
    FIELD(io_uring_sqe, "cmd_op", cmd_op);
    FIELD(io_uring_sqe, "__pad1", __pad1);
    FIELD(io_uring_sqe, "addr", addr);
    FIELD(io_uring_sqe, "splice_off_in", splice_off_in);
    FIELD(io_uring_sqe, "len", len);
    FIELD(io_uring_sqe, "rw_flags", rw_flags);
    FIELD(io_uring_sqe, "fsync_flags", fsync_flags);
    FIELD(io_uring_sqe, "poll_events", poll_events);
    FIELD(io_uring_sqe, "poll32_events", poll32_events);
    FIELD(io_uring_sqe, "sync_range_flags", sync_range_flags);
    FIELD(io_uring_sqe, "msg_flags", msg_flags);
    FIELD(io_uring_sqe, "timeout_flags", timeout_flags);
    FIELD(io_uring_sqe, "accept_flags", accept_flags);
    FIELD(io_uring_sqe, "cancel_flags", cancel_flags);
    FIELD(io_uring_sqe, "open_flags", open_flags);
    FIELD(io_uring_sqe, "statx_flags", statx_flags);
    FIELD(io_uring_sqe, "fadvise_advice", fadvise_advice);
    FIELD(io_uring_sqe, "splice_flags", splice_flags);
    FIELD(io_uring_sqe, "rename_flags", rename_flags);
    FIELD(io_uring_sqe, "unlink_flags", unlink_flags);
    FIELD(io_uring_sqe, "hardlink_flags", hardlink_flags);
    FIELD(io_uring_sqe, "xattr_flags", xattr_flags);
    FIELD(io_uring_sqe, "msg_ring_flags", msg_ring_flags);
    FIELD(io_uring_sqe, "uring_cmd_flags", uring_cmd_flags);
    FIELD(io_uring_sqe, "user_data", user_data);
    FIELD(io_uring_sqe, "buf_index", buf_index);
    FIELD(io_uring_sqe, "buf_group", buf_group);
    FIELD(io_uring_sqe, "personality", personality);
    FIELD(io_uring_sqe, "splice_fd_in", splice_fd_in);
    FIELD(io_uring_sqe, "file_index", file_index);
    FIELD(io_uring_sqe, "addr_len", addr_len);
    FIELD(io_uring_sqe, "__pad3", __pad3);
    FIELD(io_uring_sqe, "addr3", addr3);
    FIELD(io_uring_sqe, "__pad2", __pad2);
    FIELD(io_uring_sqe, "cmd", cmd);

    STRUCT(io_uring_cqe);
    FIELD(io_uring_cqe, "user_data", user_data);
    FIELD(io_uring_cqe, "res", res);
    FIELD(io_uring_cqe, "flags", flags);
    FLEX(io_uring_cqe, "big_cqe", big_cqe);

    STRUCT(io_sqring_offsets);
    FIELD(io_sqring_offsets, "head", head);
    FIELD(io_sqring_offsets, "tail", tail);
    FIELD(io_sqring_offsets, "ring_mask", ring_mask);
    FIELD(io_sqring_offsets, "ring_entries", ring_entries);
    FIELD(io_sqring_offsets, "flags", flags);
    FIELD(io_sqring_offsets, "dropped", dropped);
    FIELD(io_sqring_offsets, "array", array);
    FIELD(io_sqring_offsets, "resv1", resv1);
    FIELD(io_sqring_offsets, "resv2", resv2);

    STRUCT(io_cqring_offsets);
    FIELD(io_cqring_offsets, "head", head);
    FIELD(io_cqring_offsets, "tail", tail);
    FIELD(io_cqring_offsets, "ring_mask", ring_mask);
    FIELD(io_cqring_offsets, "ring_entries", ring_entries);
    FIELD(io_cqring_offsets, "overflow", overflow);
    FIELD(io_cqring_offsets, "cqes", cqes);
    FIELD(io_cqring_offsets, "flags", flags);
    FIELD(io_cqring_offsets, "resv1", resv1);
    FIELD(io_cqring_offsets, "resv2", resv2);

    STRUCT(io_uring_params);
    FIELD(io_uring_params, "sq_entries", sq_entries);
    FIELD(io_uring_params, "cq_entries", cq_entries);
    FIELD(io_uring_params, "flags", flags);
    FIELD(io_uring_params, "sq_thread_cpu", sq_thread_cpu);
    FIELD(io_uring_params, "sq_thread_idle", sq_thread_idle);
    FIELD(io_uring_params, "features", features);
    FIELD(io_uring_params, "wq_fd", wq_fd);
    FIELD(io_uring_params, "resv", resv);
    FIELD(io_uring_params, "sq_off", sq_off);
    FIELD(io_uring_params, "sq_off.array", sq_off.array);
    FIELD(io_uring_params, "cq_off", cq_off);
    FIELD(io_uring_params, "cq_off.cqes", cq_off.cqes);

    /* glibc's cpu_set_t is a typedef of an anonymous struct: one array of __cpu_mask words. */
    TYPEDEF(cpu_set_t);
    TFIELD(cpu_set_t, "__bits", __bits);

    TYPEDEF(epoll_data_t);
    TFIELD(epoll_data_t, "ptr", ptr);
    TFIELD(epoll_data_t, "fd", fd);
    TFIELD(epoll_data_t, "u32", u32);
    TFIELD(epoll_data_t, "u64", u64);
}

static void constants(void) {
    /* open/fcntl/memfd/mmap */
    CONST(O_RDONLY);
    CONST(O_WRONLY);
    CONST(O_RDWR);
    CONST(O_NONBLOCK);
    CONST(O_CLOEXEC);
    CONST(O_CREAT);
    CONST(O_EXCL);
    CONST(O_TRUNC);
    CONST(F_GETFD);
    CONST(F_SETFD);
    CONST(FD_CLOEXEC);
    CONST(F_GETFL);
    CONST(F_SETFL);
    CONST(F_DUPFD_CLOEXEC);
    CONST(F_ADD_SEALS);
    CONST(F_GET_SEALS);
    CONST(F_SEAL_SEAL);
    CONST(F_SEAL_SHRINK);
    CONST(F_SEAL_GROW);
    CONST(F_SEAL_WRITE);
    CONST(MFD_CLOEXEC);
    CONST(MFD_ALLOW_SEALING);
    CONST(MFD_HUGETLB);
    CONST(PROT_NONE);
    CONST(PROT_READ);
    CONST(PROT_WRITE);
    CONST(MAP_SHARED);
    CONST(MAP_PRIVATE);
    CONST(MAP_ANONYMOUS);
    CONST(MAP_POPULATE);
    CONST(MAP_NORESERVE);
    POINTER(MAP_FAILED);
    CONST(_SC_PAGESIZE);
    CONST(_SC_NPROCESSORS_ONLN);

    /* eventfd/epoll/poll */
    CONST(EFD_CLOEXEC);
    CONST(EFD_NONBLOCK);
    CONST(EFD_SEMAPHORE);
    CONST(EPOLL_CLOEXEC);
    CONST(EPOLLIN);
    CONST(EPOLLOUT);
    CONST(EPOLLERR);
    CONST(EPOLLHUP);
    CONST(EPOLLRDHUP);
    CONST(EPOLLET);
    CONST(EPOLLONESHOT);
    CONST(EPOLL_CTL_ADD);
    CONST(EPOLL_CTL_MOD);
    CONST(EPOLL_CTL_DEL);
    CONST(POLLIN);
    CONST(POLLOUT);
    CONST(POLLERR);
    CONST(POLLHUP);
    CONST(POLLNVAL);
    CONST(POLLRDHUP);

    /* sockets */
    CONST(AF_UNIX);
    CONST(SOCK_STREAM);
    CONST(SOCK_SEQPACKET);
    CONST(SOCK_CLOEXEC);
    CONST(SOCK_NONBLOCK);
    CONST(SOL_SOCKET);
    CONST(SCM_RIGHTS);
    CONST(MSG_NOSIGNAL);
    CONST(MSG_CMSG_CLOEXEC);
    CONST(MSG_DONTWAIT);
    CONST(MSG_CTRUNC);
    CONST(MSG_TRUNC);
    CONST(MSG_PEEK);
    CONST(MSG_WAITALL);
    CONST(SHUT_RD);
    CONST(SHUT_WR);
    CONST(SHUT_RDWR);

    /* network interfaces (net/if.h, bits/ioctls.h) */
    CONST(IFNAMSIZ);
    CONST(SIOCGIFFLAGS);
    CONST(SIOCSIFFLAGS);
    CONST(SIOCGIFMTU);
    CONST(SIOCSIFMTU);
    CONST(SIOCGIFINDEX);
    CONST(SIOCGIFHWADDR);
    CONST(SIOCSIFHWADDR);
    CONST(IFF_UP);
    CONST(IFF_RUNNING);
    CONST(IFF_PROMISC);
    CONST(IFF_NOARP);
    CONST(IFF_BROADCAST);
    CONST(IFF_MULTICAST);

    /* tun/tap (linux/if_tun.h); the ioctl numbers are _IOW/_IOR macros that jextract evaluates */
    CONST(TUNSETIFF);
    CONST(TUNGETIFF);
    CONST(TUNSETPERSIST);
    CONST(TUNSETOWNER);
    CONST(TUNSETGROUP);
    CONST(TUNGETFEATURES);
    CONST(TUNSETOFFLOAD);
    CONST(TUNGETVNETHDRSZ);
    CONST(TUNSETVNETHDRSZ);
    CONST(TUNSETQUEUE);
    CONST(TUNSETVNETLE);
    CONST(TUNGETVNETLE);
    CONST(TUNSETVNETBE);
    CONST(TUNGETVNETBE);
    CONST(TUNSETCARRIER);
    CONST(TUNSETSNDBUF);
    CONST(TUNGETSNDBUF);
    CONST(IFF_TUN);
    CONST(IFF_TAP);
    CONST(IFF_NO_PI);
    CONST(IFF_ONE_QUEUE);
    CONST(IFF_VNET_HDR);
    CONST(IFF_TUN_EXCL);
    CONST(IFF_MULTI_QUEUE);
    CONST(IFF_ATTACH_QUEUE);
    CONST(IFF_DETACH_QUEUE);
    CONST(IFF_PERSIST);
    CONST(IFF_NO_CARRIER);
    CONST(IFF_NAPI);
    CONST(TUN_F_CSUM);
    CONST(TUN_F_TSO4);
    CONST(TUN_F_TSO6);
    CONST(TUN_F_TSO_ECN);
    CONST(TUN_F_UFO);
    CONST(TUN_F_USO4);
    CONST(TUN_F_USO6);

    /* virtio transport features (linux/virtio_config.h) */
    CONST(VIRTIO_CONFIG_S_ACKNOWLEDGE);
    CONST(VIRTIO_CONFIG_S_DRIVER);
    CONST(VIRTIO_CONFIG_S_DRIVER_OK);
    CONST(VIRTIO_CONFIG_S_FAILED);
    CONST(VIRTIO_CONFIG_S_FEATURES_OK);
    CONST(VIRTIO_CONFIG_S_NEEDS_RESET);
    CONST(VIRTIO_F_ACCESS_PLATFORM);
    CONST(VIRTIO_F_ANY_LAYOUT);
    CONST(VIRTIO_F_IN_ORDER);
    CONST(VIRTIO_F_IOMMU_PLATFORM);
    CONST(VIRTIO_F_NOTIFICATION_DATA);
    CONST(VIRTIO_F_NOTIFY_ON_EMPTY);
    CONST(VIRTIO_F_ORDER_PLATFORM);
    CONST(VIRTIO_F_RING_PACKED);
    CONST(VIRTIO_F_RING_RESET);
    CONST(VIRTIO_F_SR_IOV);
    CONST(VIRTIO_F_VERSION_1);
    CONST(VIRTIO_TRANSPORT_F_END);
    CONST(VIRTIO_TRANSPORT_F_START);

    /* split virtqueue (linux/virtio_ring.h) */
    CONST(VIRTIO_RING_F_EVENT_IDX);
    CONST(VIRTIO_RING_F_INDIRECT_DESC);
    CONST(VRING_AVAIL_ALIGN_SIZE);
    CONST(VRING_AVAIL_F_NO_INTERRUPT);
    CONST(VRING_DESC_ALIGN_SIZE);
    CONST(VRING_DESC_F_INDIRECT);
    CONST(VRING_DESC_F_NEXT);
    CONST(VRING_DESC_F_WRITE);
    CONST(VRING_USED_ALIGN_SIZE);
    CONST(VRING_USED_F_NO_NOTIFY);

    /* packed virtqueue (linux/virtio_ring.h) */
    CONST(VRING_PACKED_DESC_F_AVAIL);
    CONST(VRING_PACKED_DESC_F_USED);
    CONST(VRING_PACKED_EVENT_FLAG_ENABLE);
    CONST(VRING_PACKED_EVENT_FLAG_DISABLE);
    CONST(VRING_PACKED_EVENT_FLAG_DESC);
    CONST(VRING_PACKED_EVENT_F_WRAP_CTR);

    /* virtio-net (linux/virtio_net.h) */
    CONST(VIRTIO_NET_CTRL_ANNOUNCE);
    CONST(VIRTIO_NET_CTRL_ANNOUNCE_ACK);
    CONST(VIRTIO_NET_CTRL_GUEST_OFFLOADS);
    CONST(VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET);
    CONST(VIRTIO_NET_CTRL_MAC);
    CONST(VIRTIO_NET_CTRL_MAC_ADDR_SET);
    CONST(VIRTIO_NET_CTRL_MAC_TABLE_SET);
    CONST(VIRTIO_NET_CTRL_MQ);
    CONST(VIRTIO_NET_CTRL_MQ_HASH_CONFIG);
    CONST(VIRTIO_NET_CTRL_MQ_RSS_CONFIG);
    CONST(VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX);
    CONST(VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN);
    CONST(VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET);
    CONST(VIRTIO_NET_CTRL_NOTF_COAL);
    CONST(VIRTIO_NET_CTRL_NOTF_COAL_RX_SET);
    CONST(VIRTIO_NET_CTRL_NOTF_COAL_TX_SET);
    CONST(VIRTIO_NET_CTRL_RX);
    CONST(VIRTIO_NET_CTRL_RX_ALLMULTI);
    CONST(VIRTIO_NET_CTRL_RX_ALLUNI);
    CONST(VIRTIO_NET_CTRL_RX_NOBCAST);
    CONST(VIRTIO_NET_CTRL_RX_NOMULTI);
    CONST(VIRTIO_NET_CTRL_RX_NOUNI);
    CONST(VIRTIO_NET_CTRL_RX_PROMISC);
    CONST(VIRTIO_NET_CTRL_VLAN);
    CONST(VIRTIO_NET_CTRL_VLAN_ADD);
    CONST(VIRTIO_NET_CTRL_VLAN_DEL);
    CONST(VIRTIO_NET_ERR);
    CONST(VIRTIO_NET_F_CSUM);
    CONST(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);
    CONST(VIRTIO_NET_F_CTRL_MAC_ADDR);
    CONST(VIRTIO_NET_F_CTRL_RX);
    CONST(VIRTIO_NET_F_CTRL_RX_EXTRA);
    CONST(VIRTIO_NET_F_CTRL_VLAN);
    CONST(VIRTIO_NET_F_CTRL_VQ);
    CONST(VIRTIO_NET_F_GSO);
    CONST(VIRTIO_NET_F_GUEST_ANNOUNCE);
    CONST(VIRTIO_NET_F_GUEST_CSUM);
    CONST(VIRTIO_NET_F_GUEST_ECN);
    CONST(VIRTIO_NET_F_GUEST_TSO4);
    CONST(VIRTIO_NET_F_GUEST_TSO6);
    CONST(VIRTIO_NET_F_GUEST_UFO);
    CONST(VIRTIO_NET_F_GUEST_USO4);
    CONST(VIRTIO_NET_F_GUEST_USO6);
    CONST(VIRTIO_NET_F_HASH_REPORT);
    CONST(VIRTIO_NET_F_HOST_ECN);
    CONST(VIRTIO_NET_F_HOST_TSO4);
    CONST(VIRTIO_NET_F_HOST_TSO6);
    CONST(VIRTIO_NET_F_HOST_UFO);
    CONST(VIRTIO_NET_F_HOST_USO);
    CONST(VIRTIO_NET_F_MAC);
    CONST(VIRTIO_NET_F_MQ);
    CONST(VIRTIO_NET_F_MRG_RXBUF);
    CONST(VIRTIO_NET_F_MTU);
    CONST(VIRTIO_NET_F_NOTF_COAL);
    CONST(VIRTIO_NET_F_RSC_EXT);
    CONST(VIRTIO_NET_F_RSS);
    CONST(VIRTIO_NET_F_SPEED_DUPLEX);
    CONST(VIRTIO_NET_F_STANDBY);
    CONST(VIRTIO_NET_F_STATUS);
    CONST(VIRTIO_NET_HDR_F_DATA_VALID);
    CONST(VIRTIO_NET_HDR_F_NEEDS_CSUM);
    CONST(VIRTIO_NET_HDR_F_RSC_INFO);
    CONST(VIRTIO_NET_HDR_GSO_ECN);
    CONST(VIRTIO_NET_HDR_GSO_NONE);
    CONST(VIRTIO_NET_HDR_GSO_TCPV4);
    CONST(VIRTIO_NET_HDR_GSO_TCPV6);
    CONST(VIRTIO_NET_HDR_GSO_UDP);
    CONST(VIRTIO_NET_HDR_GSO_UDP_L4);
    CONST(VIRTIO_NET_OK);
    CONST(VIRTIO_NET_S_ANNOUNCE);
    CONST(VIRTIO_NET_S_LINK_UP);
    CONST(VIRTIO_ID_NET);

    /* vhost (linux/vhost_types.h) */
    CONST(VHOST_F_LOG_ALL);
    CONST(VHOST_NET_F_VIRTIO_NET_HDR);
    CONST(VHOST_VRING_F_LOG);
    CONST(VHOST_PAGE_SIZE);
    CONST(VHOST_ACCESS_RO);
    CONST(VHOST_ACCESS_WO);
    CONST(VHOST_ACCESS_RW);

    /* io_uring (linux/io_uring.h; syscall numbers from sys/syscall.h; RWF_NOWAIT from sys/uio.h) */
    CONST(SYS_io_uring_setup);
    CONST(SYS_io_uring_enter);
    CONST(SYS_io_uring_register);
    CONST(IORING_OP_NOP);
    CONST(IORING_OP_READV);
    CONST(IORING_OP_WRITEV);
    CONST(IORING_OP_READ);
    CONST(IORING_OP_WRITE);
    CONST(IOSQE_FIXED_FILE);
    CONST(IOSQE_IO_DRAIN);
    CONST(IOSQE_IO_LINK);
    CONST(IOSQE_IO_HARDLINK);
    CONST(IOSQE_ASYNC);
    CONST(IOSQE_CQE_SKIP_SUCCESS);
    CONST(IORING_SETUP_SQPOLL);
    CONST(IORING_SETUP_CQSIZE);
    CONST(IORING_SETUP_SUBMIT_ALL);
    CONST(IORING_SETUP_COOP_TASKRUN);
    CONST(IORING_SETUP_SINGLE_ISSUER);
    CONST(IORING_SETUP_DEFER_TASKRUN);
    CONST(IORING_ENTER_GETEVENTS);
    CONST(IORING_ENTER_SQ_WAKEUP);
    CONST(IORING_ENTER_SQ_WAIT);
    CONST(IORING_FEAT_SINGLE_MMAP);
    CONST(IORING_FEAT_NODROP);
    CONST(IORING_OFF_SQ_RING);
    CONST(IORING_OFF_CQ_RING);
    CONST(IORING_OFF_SQES);
    CONST(IORING_SQ_NEED_WAKEUP);
    CONST(IORING_SQ_CQ_OVERFLOW);
    CONST(IORING_REGISTER_FILES);
    CONST(IORING_UNREGISTER_FILES);
    CONST(IORING_REGISTER_FILES_UPDATE);
    CONST(IORING_CQE_F_MORE);
    CONST(RWF_NOWAIT);

    /* scheduling (sched.h) and the plain syscalls Fds issues without libc's wrapper */
    CONST(CPU_SETSIZE);
    CONST(SYS_read);
    CONST(SYS_readv);
    CONST(SYS_writev);

    /* values of function-like macros, computed in jvhost.h */
    CONST(JVHOST_CMSG_ALIGN);
    CONST(JVHOST_CMSG_HDR_LEN);
    CONST(JVHOST_CMSG_LEN_1FD);
    CONST(JVHOST_CMSG_SPACE_1FD);
    CONST(JVHOST_CMSG_MAX_FDS);
    CONST(JVHOST_CMSG_SPACE_MAX_FDS);

    /* every errno value (asm-generic/errno-base.h, asm-generic/errno.h, bits/errno.h) */
    CONST(E2BIG);
    CONST(EACCES);
    CONST(EADDRINUSE);
    CONST(EADDRNOTAVAIL);
    CONST(EADV);
    CONST(EAFNOSUPPORT);
    CONST(EAGAIN);
    CONST(EALREADY);
    CONST(EBADE);
    CONST(EBADF);
    CONST(EBADFD);
    CONST(EBADMSG);
    CONST(EBADR);
    CONST(EBADRQC);
    CONST(EBADSLT);
    CONST(EBFONT);
    CONST(EBUSY);
    CONST(ECANCELED);
    CONST(ECHILD);
    CONST(ECHRNG);
    CONST(ECOMM);
    CONST(ECONNABORTED);
    CONST(ECONNREFUSED);
    CONST(ECONNRESET);
    CONST(EDEADLK);
    CONST(EDEADLOCK);
    CONST(EDESTADDRREQ);
    CONST(EDOM);
    CONST(EDOTDOT);
    CONST(EDQUOT);
    CONST(EEXIST);
    CONST(EFAULT);
    CONST(EFBIG);
    CONST(EHOSTDOWN);
    CONST(EHOSTUNREACH);
    CONST(EHWPOISON);
    CONST(EIDRM);
    CONST(EILSEQ);
    CONST(EINPROGRESS);
    CONST(EINTR);
    CONST(EINVAL);
    CONST(EIO);
    CONST(EISCONN);
    CONST(EISDIR);
    CONST(EISNAM);
    CONST(EKEYEXPIRED);
    CONST(EKEYREJECTED);
    CONST(EKEYREVOKED);
    CONST(EL2HLT);
    CONST(EL2NSYNC);
    CONST(EL3HLT);
    CONST(EL3RST);
    CONST(ELIBACC);
    CONST(ELIBBAD);
    CONST(ELIBEXEC);
    CONST(ELIBMAX);
    CONST(ELIBSCN);
    CONST(ELNRNG);
    CONST(ELOOP);
    CONST(EMEDIUMTYPE);
    CONST(EMFILE);
    CONST(EMLINK);
    CONST(EMSGSIZE);
    CONST(EMULTIHOP);
    CONST(ENAMETOOLONG);
    CONST(ENAVAIL);
    CONST(ENETDOWN);
    CONST(ENETRESET);
    CONST(ENETUNREACH);
    CONST(ENFILE);
    CONST(ENOANO);
    CONST(ENOBUFS);
    CONST(ENOCSI);
    CONST(ENODATA);
    CONST(ENODEV);
    CONST(ENOENT);
    CONST(ENOEXEC);
    CONST(ENOKEY);
    CONST(ENOLCK);
    CONST(ENOLINK);
    CONST(ENOMEDIUM);
    CONST(ENOMEM);
    CONST(ENOMSG);
    CONST(ENONET);
    CONST(ENOPKG);
    CONST(ENOPROTOOPT);
    CONST(ENOSPC);
    CONST(ENOSR);
    CONST(ENOSTR);
    CONST(ENOSYS);
    CONST(ENOTBLK);
    CONST(ENOTCONN);
    CONST(ENOTDIR);
    CONST(ENOTEMPTY);
    CONST(ENOTNAM);
    CONST(ENOTRECOVERABLE);
    CONST(ENOTSOCK);
    CONST(ENOTSUP);
    CONST(ENOTTY);
    CONST(ENOTUNIQ);
    CONST(ENXIO);
    CONST(EOPNOTSUPP);
    CONST(EOVERFLOW);
    CONST(EOWNERDEAD);
    CONST(EPERM);
    CONST(EPFNOSUPPORT);
    CONST(EPIPE);
    CONST(EPROTO);
    CONST(EPROTONOSUPPORT);
    CONST(EPROTOTYPE);
    CONST(ERANGE);
    CONST(EREMCHG);
    CONST(EREMOTE);
    CONST(EREMOTEIO);
    CONST(ERESTART);
    CONST(ERFKILL);
    CONST(EROFS);
    CONST(ESHUTDOWN);
    CONST(ESOCKTNOSUPPORT);
    CONST(ESPIPE);
    CONST(ESRCH);
    CONST(ESRMNT);
    CONST(ESTALE);
    CONST(ESTRPIPE);
    CONST(ETIME);
    CONST(ETIMEDOUT);
    CONST(ETOOMANYREFS);
    CONST(ETXTBSY);
    CONST(EUCLEAN);
    CONST(EUNATCH);
    CONST(EUSERS);
    CONST(EWOULDBLOCK);
    CONST(EXDEV);
    CONST(EXFULL);
}

int main(void) {
    structs();
    constants();
    return fflush(stdout) == 0 ? 0 : 1;
}
