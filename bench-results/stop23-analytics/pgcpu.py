# Sum of user+system CPU seconds of all processes whose comm is `postgres` (or argv[1]).
import os, sys
name = sys.argv[1] if len(sys.argv) > 1 else "postgres"
tot = 0
for p in os.listdir("/proc"):
    if not p.isdigit(): continue
    try:
        s = open(f"/proc/{p}/stat").read()
    except OSError: continue
    comm = s[s.index("(")+1:s.rindex(")")]
    if comm.startswith(name):
        f = s[s.rindex(")")+2:].split()
        tot += int(f[11]) + int(f[12])
print(f"{tot/os.sysconf('SC_CLK_TCK'):.2f}")
