/* rawsys.h: the syscall numbers and the raw three-argument syscall of the libc-free test programs
 * (x86_64: nothing but the kernel touches their address space). */
#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_dup 32
#define SYS_pause 34
#define SYS_fork 57
#define SYS_exit 60

static long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return r;
}
