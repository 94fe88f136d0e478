# Stop 25 experiment: Redis's CPU to deliver the same 1M-event loadgen workload (written
# beforehand to streams rps_rd:*) to a consumer group two ways: plain XREADGROUP COUNT n per
# stream, and the engine's read script (engine/src/stream/reader/read.lua, default budget).
# And minimal.lua: the least a script can do. Prints Redis's CPU seconds (INFO cpu, user + sys) for each; the client's time is not counted.
import subprocess, sys, redis
r = redis.Redis(host="127.0.0.1", port=6379)
streams = [f"rps_rd:intuition_{s}" for s in ("atom_created", "triple_created", "deposited", "redeemed", "share_price_changed")]
script = r.register_script(open("/work/main/engine/src/stream/reader/read.lua").read())
minimal = r.register_script(open("minimal.lua").read())
def cpu():
    i = r.info("cpu"); return i["used_cpu_user"] + i["used_cpu_sys"]
def reset(group):
    for s in streams:
        try: r.xgroup_destroy(s, group)
        except redis.ResponseError: pass
        r.xgroup_create(s, group, id="0")
def plain(group, count):
    n = 0
    while True:
        reply = r.xreadgroup(group, "c", {s: ">" for s in streams}, count=count)
        got = sum(len(e) for _, e in reply)
        if got == 0: return n
        n += got
def scripted(group, count, script=script):
    n = 0
    while True:
        reply = script(keys=streams, args=[group, "c", "new", count, 256 << 20, 16 << 20, 1024, 0])
        got = sum(len([x for x in flat]) for _, flat in reply)
        if got == 0: return n
        n += 1
for way in sys.argv[1:]:
    reset("g_" + way)
    c0 = cpu()
    if way.startswith("plain"): n = plain("g_" + way, 10000)
    elif way.startswith("minimal"): n = scripted("g_" + way, 10000, minimal)
    else: n = scripted("g_" + way, 10000)
    print(f"{way}: redis cpu {cpu() - c0:.2f} s ({n} replies or entries)")
