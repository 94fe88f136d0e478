# Sum of user+system CPU seconds of all processes whose comm is `postgres` (or argv[1]).
# With a second argument `reaped` (stop 25), also what they have reaped from children that
# ended (cutime/cstime): a backend that exited before the second reading still counts,
# through its postmaster.
import os, sys
name = sys.argv[1] if len(sys.argv) > 1 else "postgres"
fields = 4 if sys.argv[2:] == ["reaped"] else 2
tot = 0
for p in os.listdir("/proc"):
    if not p.isdigit(): continue
    try:
        s = open(f"/proc/{p}/stat").read()
    except OSError: continue
    comm = s[s.index("(")+1:s.rindex(")")]
    if comm.startswith(name):
        f = s[s.rindex(")")+2:].split()
        tot += sum(int(x) for x in f[11:11 + fields])
print(f"{tot/os.sysconf('SC_CLK_TCK'):.2f}")
