/*
 * vmlab host stepper: a minimal process that runs memory syscalls on command.
 *
 * Built static, non-PIE, without libc (`gcc -static -nostdlib -fno-pie -no-pie -fno-stack-protector
 * -O2`), so its address space is only its own PT_LOADs, its bss, [stack], vvar/vdso and [vsyscall]:
 * no heap, no ld.so, no malloc. vmlab.host.oracle drives it over a SOCK_SEQPACKET socket on fd 1000
 * (CHANNEL_FD), so the fds a scenario opens are 3, 4, ... as in the model.
 *
 * Protocol (little endian, one message each way per command):
 *   command: struct cmd (64 bytes), optionally followed by a payload that lands at `io.payload`;
 *            the oracle learns that address from the hello and passes absolute pointers into it.
 *   reply:   struct reply (24 bytes); FORK attaches the child's channel with SCM_RIGHTS.
 * At start (and in a forked child, and after a successful execve of the stepper) it sends a HELLO
 * reply with its pid and the payload address, then blocks in read() until the next command.
 *
 * No perturbation: every page the command loop touches (its bss, its image, a few stack pages) is
 * touched before the hello, so after one warm-up command handling a command takes no page fault and
 * changes no VMA. After FORK both processes take COW faults on those pages once; the oracle sends a
 * warm-up command to each.
 */

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;

#define CHANNEL_FD 1000 /* our end of the command channel */
#define FORK_FD_OURS 1001 /* FORK: the end handed to the oracle */
#define FORK_FD_CHILD 1002 /* FORK: the end the child keeps */
#define PAGE 4096UL
#define IO_SIZE (4 * PAGE) /* command record + payload */
#define STACK_WARM (2 * PAGE)

#define SYS_read 0
#define SYS_write 1
#define SYS_close 3
#define SYS_dup2 33
#define SYS_getpid 39
#define SYS_sendmsg 46
#define SYS_socketpair 53
#define SYS_clone 56
#define SYS_exit_group 231

#define AF_UNIX 1
#define SOCK_SEQPACKET 5
#define SOL_SOCKET 1
#define SCM_RIGHTS 1
#define SIGCHLD 17
#define CLONE_PARENT 0x00008000UL

enum { OP_NOP = 0, OP_SYSCALL = 1, OP_ACCESS = 2, OP_FORK = 3, OP_EXIT = 4 };
enum { TAG_HELLO = 1, TAG_DONE = 2 };
enum { ACCESS_WRITE = 1 };

struct cmd {
    u32 op;
    u32 flags; /* ACCESS: ACCESS_WRITE */
    u64 nr;    /* SYSCALL: the x86_64 syscall number */
    u64 arg[6]; /* SYSCALL: the arguments; ACCESS: arg[0] = addr, arg[1] = length */
};

struct reply {
    u32 tag;
    u32 pad;
    i64 value; /* HELLO: our pid; DONE: the raw result (-errno on failure) */
    u64 aux;   /* HELLO: address of io.payload */
};

struct iov { void *base; u64 len; };
struct msghdr_ { void *name; u32 namelen; struct iov *iov; u64 iovlen; void *control; u64 controllen; int flags; };
struct cmsg_fd { u64 len; int level; int type; int fd; int pad; };

static struct {
    struct cmd cmd;
    char payload[IO_SIZE - sizeof(struct cmd)];
} io __attribute__((aligned(PAGE)));
/* In .data on purpose: the image then has a file-backed rw PT_LOAD plus a bss VMA, as most programs do. */
static volatile int channel = CHANNEL_FD;
static struct reply rep;
static struct cmsg_fd cmsg;
static struct iov iov;
static struct msghdr_ msg;

extern char __executable_start[], __bss_start[], _end[];

static inline i64 sys6(u64 n, u64 a, u64 b, u64 c, u64 d, u64 e, u64 f)
{
    register u64 r10 __asm__("r10") = d;
    register u64 r8 __asm__("r8") = e;
    register u64 r9 __asm__("r9") = f;
    i64 ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sys1(n, a) sys6(n, (u64)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6(n, (u64)(a), (u64)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6(n, (u64)(a), (u64)(b), (u64)(c), 0, 0, 0)

static void __attribute__((noreturn)) die(int status)
{
    for (;;)
        sys1(SYS_exit_group, status);
}

/* Reply on the channel; attach `fd` with SCM_RIGHTS when fd >= 0. */
static void answer(u32 tag, i64 value, u64 aux, int fd)
{
    rep.tag = tag;
    rep.value = value;
    rep.aux = aux;
    iov.base = &rep;
    iov.len = sizeof rep;
    msg.iov = &iov;
    msg.iovlen = 1;
    msg.control = 0;
    msg.controllen = 0;
    if (fd >= 0) {
        cmsg.len = 20; /* CMSG_LEN(sizeof(int)) */
        cmsg.level = SOL_SOCKET;
        cmsg.type = SCM_RIGHTS;
        cmsg.fd = fd;
        msg.control = &cmsg;
        msg.controllen = sizeof cmsg; /* CMSG_SPACE(sizeof(int)) */
    }
    if (sys3(SYS_sendmsg, channel, &msg, 0) != (i64)sizeof rep)
        die(113);
}

static void hello(void)
{
    answer(TAG_HELLO, sys1(SYS_getpid, 0), (u64)io.payload, -1);
}

/* Fault in everything the command loop uses, so later commands take no faults of their own. */
static void __attribute__((noinline)) warm_up(void)
{
    volatile char pad[STACK_WARM];
    for (u64 i = 0; i < sizeof pad; i += PAGE)
        pad[i] = 0;
    for (char *p = __executable_start; p < _end; p += PAGE)
        (void)*(volatile char *)p;
    for (char *p = (char *)((u64)__bss_start & ~(PAGE - 1)); p < _end; p += PAGE)
        *(volatile char *)p = *(volatile char *)p;
}

/* Touch one byte in each page of [addr, addr+len), in address order. */
static void access_range(u64 addr, u64 len, int write)
{
    u64 end = addr + len;
    for (u64 p = addr; p < end; p = (p | (PAGE - 1)) + 1) {
        if (write)
            *(volatile char *)p = 1;
        else
            (void)*(volatile char *)p;
    }
}

/*
 * fork() with a fresh channel for the child. clone(CLONE_PARENT) instead of a plain fork so that the
 * child's parent is the oracle, which can then waitpid() it and report the signal that killed it;
 * the address-space copy (dup_mmap) is the same as fork's.
 */
static void do_fork(void)
{
    int sv[2];
    i64 r = sys6(SYS_socketpair, AF_UNIX, SOCK_SEQPACKET, 0, (u64)sv, 0, 0);
    if (r < 0) {
        answer(TAG_DONE, r, 0, -1);
        return;
    }
    sys2(SYS_dup2, sv[0], FORK_FD_OURS);
    sys2(SYS_dup2, sv[1], FORK_FD_CHILD);
    sys1(SYS_close, sv[0]);
    sys1(SYS_close, sv[1]);
    i64 pid = sys6(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0, 0);
    if (pid == 0) {
        sys2(SYS_dup2, FORK_FD_CHILD, CHANNEL_FD);
        sys1(SYS_close, FORK_FD_CHILD);
        sys1(SYS_close, FORK_FD_OURS);
        hello();
        return;
    }
    sys1(SYS_close, FORK_FD_CHILD);
    answer(TAG_DONE, pid, 0, pid > 0 ? FORK_FD_OURS : -1);
    sys1(SYS_close, FORK_FD_OURS);
}

static void __attribute__((noreturn, used)) stepper_main(void)
{
    warm_up();
    hello();
    for (;;) {
        i64 n = sys3(SYS_read, channel, &io, sizeof io);
        if (n == 0)
            die(0); /* the oracle went away */
        if (n < (i64)sizeof io.cmd)
            die(112);
        switch (io.cmd.op) {
        case OP_NOP:
            answer(TAG_DONE, 0, 0, -1);
            break;
        case OP_SYSCALL:
            answer(TAG_DONE,
                   sys6(io.cmd.nr, io.cmd.arg[0], io.cmd.arg[1], io.cmd.arg[2], io.cmd.arg[3],
                        io.cmd.arg[4], io.cmd.arg[5]),
                   0, -1);
            break;
        case OP_ACCESS:
            access_range(io.cmd.arg[0], io.cmd.arg[1], io.cmd.flags & ACCESS_WRITE);
            answer(TAG_DONE, 0, 0, -1);
            break;
        case OP_FORK:
            do_fork();
            break;
        case OP_EXIT:
            die(0);
        default:
            die(114);
        }
    }
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  xor %ebp, %ebp\n"
        "  and $-16, %rsp\n"
        "  call stepper_main\n"
        "  hlt\n");
