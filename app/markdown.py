"""Escaping run text for st.markdown-based elements (alerts, captions).

Streamlit escapes HTML, but markdown still turns `*x*`, links, images, `:red[...]` and `$...$`
into formatting. Backslash-escaping every ASCII punctuation character shows text as written.
"""

import string

_ESCAPES = {ord(ch): "\\" + ch for ch in string.punctuation}


def escape(text: str) -> str:
    """Text that st.markdown shows literally ('a_b' stays 'a_b', not italic)."""
    return str(text).translate(_ESCAPES).replace("\n", "  \n")
