// The default models' architectures, as the HF config.json files they are saved with. Sized for
// about 5–10M parameters each, so that an hour of CPU training here gets them somewhere useful.

/** Special token ids of the default tokenizer (see src/tokenizer/bpe-train.ts). */
export const DEFAULT_SPECIALS = { pad: 0, bos: 1, eos: 2, mask: 3, unk: 4 } as const;

/** A Llama-architecture causal LM. */
export function defaultArConfig(vocabSize: number): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: vocabSize,
    hidden_size: 256,
    intermediate_size: 688,
    num_hidden_layers: 6,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    head_dim: 64,
    hidden_act: 'silu',
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: true,
    initializer_range: 0.02,
    bos_token_id: DEFAULT_SPECIALS.bos,
    eos_token_id: DEFAULT_SPECIALS.eos,
    pad_token_id: DEFAULT_SPECIALS.pad,
    dtype: 'float32',
  };
}

/** A ModernBERT-architecture masked LM. */
export function defaultMlmConfig(vocabSize: number): Record<string, unknown> {
  return {
    architectures: ['ModernBertForMaskedLM'],
    model_type: 'modernbert',
    vocab_size: vocabSize,
    hidden_size: 256,
    intermediate_size: 512,
    num_hidden_layers: 6,
    num_attention_heads: 4,
    hidden_activation: 'gelu',
    max_position_embeddings: 512,
    norm_eps: 1e-5,
    norm_bias: false,
    attention_bias: false,
    mlp_bias: false,
    global_attn_every_n_layers: 3,
    local_attention: 128,
    global_rope_theta: 160000,
    local_rope_theta: 10000,
    classifier_activation: 'gelu',
    classifier_bias: false,
    decoder_bias: true,
    tie_word_embeddings: true,
    initializer_range: 0.02,
    pad_token_id: DEFAULT_SPECIALS.pad,
    bos_token_id: DEFAULT_SPECIALS.bos,
    eos_token_id: DEFAULT_SPECIALS.eos,
    cls_token_id: DEFAULT_SPECIALS.bos,
    sep_token_id: DEFAULT_SPECIALS.eos,
    mask_token_id: DEFAULT_SPECIALS.mask,
    dtype: 'float32',
  };
}

/** A larger causal LM, used only to score generated text (generative perplexity). */
export function scorerConfig(vocabSize: number): Record<string, unknown> {
  return { ...defaultArConfig(vocabSize), hidden_size: 320, intermediate_size: 864, num_hidden_layers: 8, num_attention_heads: 5, num_key_value_heads: 5 };
}

export const PRESETS: Record<string, { kind: 'mlm' | 'ar'; config: (vocab: number) => Record<string, unknown> }> = {
  'default-ar': { kind: 'ar', config: defaultArConfig },
  'default-mlm': { kind: 'mlm', config: defaultMlmConfig },
  scorer: { kind: 'ar', config: scorerConfig },
};
