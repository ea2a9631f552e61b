/* forker: no libc. Reads command bytes from stdin: 'f' forks a child that pauses for ever, then
 * answers 'o' on stdout. Announces itself with 'r'. */
#define SYS_read 0
#define SYS_write 1
#define SYS_pause 34
#define SYS_fork 57
#define SYS_exit 60

static long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return r;
}

static char cmd;

__attribute__((noreturn, used)) void cmain(void)
{
	sys3(SYS_write, 1, (long)"r", 1);
	while (sys3(SYS_read, 0, (long)&cmd, 1) == 1) {
		if (cmd != 'f')
			continue;
		if (sys3(SYS_fork, 0, 0, 0) == 0)
			for (;;)
				sys3(SYS_pause, 0, 0, 0);
		sys3(SYS_write, 1, (long)"o", 1);
	}
	sys3(SYS_exit, 0, 0, 0);
	__builtin_unreachable();
}

__asm__(".globl _start\n_start:\n\tand $-16, %rsp\n\tcall cmain\n");
