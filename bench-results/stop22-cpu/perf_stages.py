import sys, re, collections
# Stage attribution of `perf script -F comm,tid,ip,sym` output (recorded with --call-graph dwarf):
# each sample goes to the innermost frame matching a stage; page-fault share shown beside it.
# usage: python3 perf_stages.py perf.txt
# stage classification by frames (innermost first)
stages = [
 ("redis read", re.compile(r"redis::|combine::")),
 ("pg send (tokio-postgres/TLS)", re.compile(r"tokio_postgres::connection|rustls|tokio_rustls")),
 ("copy encode", re.compile(r"rps::ingest::copy")),
 ("simd-json", re.compile(r"simd_json::Deserializer|simd_json::to_tape")),
 ("decode fields", re.compile(r"rps::event::decode|rps::event::numeric|rps::event::hex")),
 ("batch (parts/add/sort)", re.compile(r"rps::ingest::batch")),
 ("reader bookkeeping", re.compile(r"rps::stream::")),
 ("ingest other", re.compile(r"rps::ingest")),
]
pf = re.compile(r"page_fault|clear_page")
tot=0; c=collections.Counter(); pfc=collections.Counter()
def flush(frames):
    global tot
    if not frames: return
    tot+=1
    st="other"
    for f in frames:
        for name,rx in stages:
            if rx.search(f): st=name; break
        if st!="other": break
    c[st]+=1
    if any(pf.search(f) for f in frames): pfc[st]+=1
frames=[]
for line in open(sys.argv[1]):
    if not line.strip():
        flush(frames); frames=[]; continue
    if line[0] not in ' \t':
        flush(frames); frames=[]; continue
    frames.append(line.strip())
flush(frames)
for k,v in c.most_common(): print(f"{k:32s} {100*v/tot:5.1f}%  (page faults {100*pfc[k]/tot:4.1f}%)")
print("samples",tot)
