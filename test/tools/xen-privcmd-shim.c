/*
 * xen-privcmd-shim: lets Xen's xl run its dry-run parser (`xl -N create CFG`) on a
 * machine without Xen, for vcstor's tests of the Xen hypervisor driver.
 *
 * xl allocates a libxl context before it parses anything, and libxl opens the
 * privileged command device (/dev/xen/privcmd) and asks the hypervisor for its
 * version and physical info. This LD_PRELOAD library pretends to be that device:
 * opening /dev/xen/privcmd gives a descriptor on /dev/null, and the hypercall ioctl on
 * it answers xen_version and sysctl(physinfo) with a small made-up host, and ENOSYS for
 * everything else. Other privcmd ioctls fail with ENOTTY (an old kernel driver), which
 * makes libxendevicemodel fall back to plain hypercalls. xenstore is not faked here: the
 * caller points XENSTORED_PATH at a unix socket that merely accepts; a dry run sends it
 * nothing.
 *
 * Build: gcc -shared -fPIC -O2 -o xen-privcmd-shim.so xen-privcmd-shim.c -ldl
 * Use:   LD_PRELOAD=$PWD/xen-privcmd-shim.so XENSTORED_PATH=/tmp/xs.sock \
 *          /usr/lib/xen-4.17/bin/xl -N create guest.cfg
 *
 * Never load this next to a real hypervisor: it answers instead of Xen.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define PRIVCMD_PATH "/dev/xen/privcmd"

/* From Linux's include/uapi/xen/privcmd.h. */
struct privcmd_hypercall {
    uint64_t op;
    uint64_t arg[5];
};
#define IOCTL_PRIVCMD_HYPERCALL _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))

/* From Xen's public headers (xen.h, version.h, sysctl.h of Xen 4.17). */
#define HYPERVISOR_xen_version 17
#define HYPERVISOR_sysctl 35
#define XENVER_version 0
#define XENVER_extraversion 1
#define XENVER_compile_info 2
#define XENVER_capabilities 3
#define XENVER_changeset 4
#define XENVER_platform_parameters 5
#define XENVER_get_features 6
#define XENVER_pagesize 7
#define XENVER_commandline 9
#define XEN_SYSCTL_physinfo 3

struct xen_sysctl_physinfo_4_17 {
    uint32_t threads_per_core;
    uint32_t cores_per_socket;
    uint32_t nr_cpus;
    uint32_t max_cpu_id;
    uint32_t nr_nodes;
    uint32_t max_node_id;
    uint32_t cpu_khz;
    uint32_t capabilities;
    uint32_t arch_capabilities;
    uint32_t pad;
    uint64_t total_pages;
    uint64_t free_pages;
    uint64_t scrub_pages;
    uint64_t outstanding_pages;
    uint64_t max_mfn;
    uint32_t hw_cap[8];
};

struct xen_sysctl_head {
    uint32_t cmd;
    uint32_t interface_version;
    /* the union of commands follows, 8-byte aligned */
    uint64_t payload[16];
};

/* The descriptors handed out for /dev/xen/privcmd (xencall, foreignmemory, devicemodel). */
#define MAX_FAKE_FDS 16
static int fake_fds[MAX_FAKE_FDS];
static int fake_fd_count;

static int is_fake_fd(int fd) {
    for (int i = 0; i < fake_fd_count; i++)
        if (fake_fds[i] == fd) return 1;
    return 0;
}

static int open_fake(void) {
    int (*real_open)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    int fd = real_open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0 && fake_fd_count < MAX_FAKE_FDS) fake_fds[fake_fd_count++] = fd;
    return fd;
}

#define OPEN_WRAPPER(name)                                                         \
    int name(const char *path, int flags, ...) {                                   \
        mode_t mode = 0;                                                           \
        if (flags & (O_CREAT | O_TMPFILE)) {                                       \
            va_list ap;                                                            \
            va_start(ap, flags);                                                   \
            mode = va_arg(ap, mode_t);                                             \
            va_end(ap);                                                            \
        }                                                                          \
        if (strcmp(path, PRIVCMD_PATH) == 0) return open_fake();           \
        int (*real)(const char *, int, ...) =                                      \
            (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #name);              \
        return real(path, flags, mode);                                            \
    }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                                       \
    int name(int dirfd, const char *path, int flags, ...) {                        \
        mode_t mode = 0;                                                           \
        if (flags & (O_CREAT | O_TMPFILE)) {                                       \
            va_list ap;                                                            \
            va_start(ap, flags);                                                   \
            mode = va_arg(ap, mode_t);                                             \
            va_end(ap);                                                            \
        }                                                                          \
        if (strcmp(path, PRIVCMD_PATH) == 0) return open_fake();           \
        int (*real)(int, const char *, int, ...) =                                 \
            (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, #name);         \
        return real(dirfd, path, flags, mode);                                     \
    }
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

int close(int fd) {
    for (int i = 0; i < fake_fd_count; i++) {
        if (fake_fds[i] == fd) {
            fake_fds[i] = fake_fds[--fake_fd_count];
            break;
        }
    }
    int (*real_close)(int) = (int (*)(int))dlsym(RTLD_NEXT, "close");
    return real_close(fd);
}

static long copy_string(uint64_t address, const char *text, size_t size) {
    char *buffer = (char *)(uintptr_t)address;
    memset(buffer, 0, size);
    strncpy(buffer, text, size - 1);
    return 0;
}

static long xen_version(uint64_t cmd, uint64_t address) {
    switch (cmd) {
    case XENVER_version: return (4 << 16) | 17;
    case XENVER_extraversion: return copy_string(address, ".0-shim", 16);
    case XENVER_capabilities: return copy_string(address, "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64", 1024);
    case XENVER_changeset: return copy_string(address, "shim", 64);
    case XENVER_commandline: return copy_string(address, "", 1024);
    case XENVER_pagesize: return 4096;
    case XENVER_platform_parameters: *(uint64_t *)(uintptr_t)address = 0xffff800000000000ULL; return 0;
    case XENVER_get_features: {
        uint32_t *info = (uint32_t *)(uintptr_t)address; /* {submap_idx, submap} */
        info[1] = 0;
        return 0;
    }
    case XENVER_compile_info: {
        char *info = (char *)(uintptr_t)address; /* compiler[64] by[16] domain[32] date[32] */
        memset(info, 0, 144);
        strcpy(info, "gcc");
        strcpy(info + 64, "shim");
        strcpy(info + 80, "localdomain");
        strcpy(info + 112, "today");
        return 0;
    }
    default: errno = ENOSYS; return -1;
    }
}

static long sysctl(uint64_t address) {
    struct xen_sysctl_head *sysctl = (struct xen_sysctl_head *)(uintptr_t)address;
    if (sysctl->cmd != XEN_SYSCTL_physinfo) {
        errno = ENOSYS;
        return -1;
    }
    struct xen_sysctl_physinfo_4_17 *info = (struct xen_sysctl_physinfo_4_17 *)sysctl->payload;
    memset(info, 0, sizeof(*info));
    info->threads_per_core = 1;
    info->cores_per_socket = 2;
    info->nr_cpus = 2;
    info->max_cpu_id = 1;
    info->nr_nodes = 1;
    info->max_node_id = 0;
    info->cpu_khz = 2000000;
    info->capabilities = 0x3f; /* hvm, pv, directio, hap, shadow, iommu_hap_pt_share */
    info->total_pages = 6ULL << 18; /* 6 GiB of 4 KiB pages */
    info->free_pages = 4ULL << 18;
    info->max_mfn = (6ULL << 18) - 1;
    return 0;
}

int ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void *argument = va_arg(ap, void *);
    va_end(ap);
    if (!is_fake_fd(fd)) {
        int (*real_ioctl)(int, unsigned long, ...) = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
        return real_ioctl(fd, request, argument);
    }
    if (request != IOCTL_PRIVCMD_HYPERCALL) {
        errno = ENOTTY;
        return -1;
    }
    struct privcmd_hypercall *call = argument;
    switch (call->op) {
    case HYPERVISOR_xen_version: return (int)xen_version(call->arg[0], call->arg[1]);
    case HYPERVISOR_sysctl: return (int)sysctl(call->arg[0]);
    default: errno = ENOSYS; return -1;
    }
}
