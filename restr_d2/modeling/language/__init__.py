"""ReSTR language encoders (registry ``LANGUAGE_ENCODER_REGISTRY``): the official GloVe
transformer and Hugging Face text encoders."""
from .build import LANGUAGE_ENCODER_REGISTRY, LanguageFeatures, build_language_encoder  # noqa: F401
from .tokenizer import WordTokenizer, check_sentence, split_words  # noqa: F401
from .glove_transformer import GloVeTransformerEncoder  # noqa: F401
from .hf_encoder import HFLanguageEncoder, resolve_model_dir  # noqa: F401
