/* A dynamically linked program installed as /opt/dyn/nc: run through the dynamic loader
 * (ld-linux-x86-64.so.2 /opt/dyn/nc -e /bin/sh ...), the kernel execs the loader, not nc. It
 * does nothing: the exec and its arguments are the scenario. */
int main(void)
{
    return 0;
}
