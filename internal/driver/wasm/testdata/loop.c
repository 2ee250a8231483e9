// Never ends: the driver must stop it at the kill timeout.
#include <stdio.h>

int main(void) {
	volatile unsigned long n = 0;
	printf("looping\n");
	fflush(stdout);
	for (;;) {
		n++;
	}
}
