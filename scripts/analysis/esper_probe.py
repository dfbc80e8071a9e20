import sys
from labledger.ledger import open_ledger
from labledger.security import KeyRing
from labledger.lab.esper import tamiyo_graph as tg
store = open_ledger("sqlite:////tmp/esper_work/esper2.db", keyring=KeyRing(), strict=False)
for sha in sys.argv[1:]:
    p = tg.load_policy(store, sha)
    out = []
    for e, r0, r1 in [(0,"DORMANT","DORMANT"),(1,"DORMANT","DORMANT"),(3,"DORMANT","DORMANT"),(1,"TRAINING","DORMANT"),(2,"BLENDING","DORMANT"),(4,"HOLDING","DORMANT"),(5,"FOSSILIZED","DORMANT"),(1,"DORMANT","TRAINING")]:
        a, pr = p.choose(tg.GraphState(epoch=e, accuracy=0.5, loss=0.9, critical=False, slots={"r0":(r0,0.0),"r1":(r1,0.0)}))
        out.append(f"e{e} {r0[:4]}/{r1[:4]}->{a.key}({pr:.2f})")
    print(sha[:8], " | ".join(out))
