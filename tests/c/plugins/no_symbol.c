/* A shared library that is not a cprof plugin: it exports no cprof_plugin. */
int not_a_plugin(void);
int not_a_plugin(void)
{
    return 42;
}
