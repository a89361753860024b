"""Print the parts of a Deployment's pod template a ServiceProfile is about (used by demo.sh)."""

import json
import sys

deployment = json.load(sys.stdin)
template = deployment["spec"]["template"]
print("generation:", deployment["metadata"]["generation"])
print("annotations:", json.dumps(template["metadata"].get("annotations", {})))
print("terminationGracePeriodSeconds:", template["spec"].get("terminationGracePeriodSeconds"))
for container in template["spec"]["containers"]:
    print(f"container {container['name']}:")
    for key in ("livenessProbe", "readinessProbe", "startupProbe", "resources", "lifecycle"):
        print(f"  {key}: {json.dumps(container.get(key))}")
    for env in container.get("env", []):
        print(f"  env {env['name']}={env.get('value', json.dumps(env.get('valueFrom')))}")
