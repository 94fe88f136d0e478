# CPU seconds (user + system) of every `postgres` process, living or ended: the living ones'
# own time plus what their parents have reaped (a backend that exited before the second
# reading counts through its postmaster's cutime/cstime).
import os
tot = 0
for p in os.listdir("/proc"):
    if not p.isdigit(): continue
    try:
        s = open(f"/proc/{p}/stat").read()
    except OSError: continue
    if s[s.index("(")+1:s.rindex(")")] != "postgres": continue
    f = s[s.rindex(")")+2:].split()
    tot += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
print(f"{tot/os.sysconf('SC_CLK_TCK'):.2f}")
