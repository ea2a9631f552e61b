/* forker: no libc. Reads command bytes from stdin: 'f' forks a child that pauses for ever, 'd' dups
 * its stdin to the lowest free descriptor; either answers 'o' on stdout. Announces itself with 'r'. */
#include "rawsys.h"

static char cmd;

__attribute__((noreturn, used)) void cmain(void)
{
	sys3(SYS_write, 1, (long)"r", 1);
	while (sys3(SYS_read, 0, (long)&cmd, 1) == 1) {
		if (cmd == 'd')
			sys3(SYS_dup, 0, 0, 0);
		else if (cmd != 'f')
			continue;
		else if (sys3(SYS_fork, 0, 0, 0) == 0)
			for (;;)
				sys3(SYS_pause, 0, 0, 0);
		sys3(SYS_write, 1, (long)"o", 1);
	}
	sys3(SYS_exit, 0, 0, 0);
	__builtin_unreachable();
}

__asm__(".globl _start\n_start:\n\tand $-16, %rsp\n\tcall cmain\n");
