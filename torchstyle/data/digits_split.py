"""The digits' fixed train/test split, kept so that loading the digits needs no scikit-learn
import (about a second of a command's start-up).

``ORDER`` is the 1,797 sample indices, the 1,437 training ones then the 360 test ones, each
in the order ``sklearn.model_selection.train_test_split(range(1797), test_size=0.2,
stratify=digits.target, random_state=0)`` returns them: uint16 little-endian, zlib, base64.
``tests/data/test_digits_split.py`` recomputes it with scikit-learn and compares.
"""

from __future__ import annotations

TRAIN_SIZE = 1437
ORDER = (
    "eNoFwQNAGAAUBcD/vppt27abbdu2rZpt1Gzbtm3btnlX1FIDCEJrryKD+QtX4rkUCKMatMFOez2cpdxaz+vQ"
    "RPnJaTFZG/tgmeM/fQ264gBl9UueG2Wpl8AqU6h35uZYolN5pjbWIv4FL1Cey0gpbcPdJANG+DH/hT3eTYl+"
    "4hwtdeG9GpUq6zjdx6k9P756N34mLXSFH+Z8fER2exx94WyT5YDP899ekopKFvsrG5GNH1N8iuJ1NQknQxjL"
    "akXsGF/geUK+Gdf9kMbUuhYZvXSWrrXxnIIre3p7TedprF6XttrDdspM1JHeWpk14DyKa3957H1QnDJpaZaA"
    "RvyHF3JdPsmFrLuW5X1S0/tIDf9jMzSfnJUStMrPSTefYoU9vHW3ChasObyJreA5GlW38XSPhUlYw1NkOieQ"
    "9T5JXnFvzqbPsZmicxw74Sk5tvdCYl6KKdqHisgLKmuD7Kbl52XazxtRYcnMn20HL7Nd+kX2WCzeJef0DgpT"
    "OSvvHZGJtuKDLtYs2p7q8SGKZKuRURNTLc4kBbWtt+QTNsYvIKy8pJy4yomss4/mU5pYXulBzaxxaTXd1fi8"
    "mVvxMzpGbWSjndDc1NfG6GxbhTtcDJeNAuZTQuqAhzjKn+SmVJV0PtKfyie9wV28NJ3hZBzRF1IvTqpP7bmU"
    "0eg+kLdbPJtgpaSZpRBwMx/G92CS107htK6xJlRHD0lmiiOtwd7S2sk2bNJUFNMTcojMoRB0p9hWS1NQd64n"
    "a2m+FOV3vtXyWBdroKOlOnfCYvrrR3ySdbXpNoMHyAJdxWslkC7SVWsqiXHPS8hUHUvrsEhW6zsLR8vpFjWU"
    "Jf5IM+gxLUapkNk/oqoxZZfwUk2iYayt54TWhQpRAyhn83bWxoehg9WmNJRVnnorzeeBfNxfajC9ohhEdt5e"
    "WXGbI/FooU+V3r6Tl/F4uFTFJk5EafBLB+Gn7rDh3oI3WxdeowWoL88i0rV6WbtqWA2LmTzTsvh5ecsR/KI5"
    "aupv9MVJecfPYPoD+3HAKuK2BRnzNOnKlaQobaNwlkJnSRg9ZQVkvya3MlRPr2G5XLCICJYWlhfh/b301A6a"
    "W+bZNVqIfBqee/pgUty1FJ6TxlE1PkhVuZJd49EUnlJpH59O/6wJT8QEvqhJvCAW2Fz+ah+5H/bSQ49p6X2Y"
    "5KObFJsn0HW0o6WSka8ipSbw+DIQZ/QlN6UmiK5xJYE+tmb8UKfQCCqPFVRRC/MPTWrNabG8xnnvp7tVdSmF"
    "ynq9r1e1kGRCHV7rl7igX/bcXkzK8Df/QwPwW6vgCs3weH4Tl3Sbl/MCiIMaPJL+6lDdIiORnjv6GeTRYV5Z"
    "oml6TY8GMkbqQzSYP/NFGScIeItGmhGPvKNNtS4y1scinCTBR5uAEdwYJ7HV01o2OS4tpb2tsKV8GXF4kle0"
    "WVhGfTWnTOGM3soGUkSJbEO4lfexG1qKavsL3a5N/Jp/sBDeSMf5BRe0o3JUN+hMeuB3CXQOiywpOtkme07t"
    "9AbVpHJUXurKMunBmyiqtcJcPSEj5J4NokCNrJNoow5GJm5Bna2vj7F/WEVtpZl01I18VQboDOqj91EZhVGb"
    "l2Map/Q1Up0W+1DezhUkmR/28dLehdJJM1zxGlilc6yTB3kbtObr3IGecREMMUhmWcxvKCpm2FceotOoLQ3H"
    "DPnh1XEJG2Wgx/dpXo8iGjyWiieU1NpcjEvwb85kMZFWzlgJXJJx3oGzaymMs61ShKLbKcnOYTk5f6br+pPm"
    "cVkUl44M/ai3rBTv8l1owLtxkXdQPN1Ob2kfNaBPHkSzOYIuwin/R1Hku1eiQt5Tftl2zyO9rRC3klQ8XL9h"
    "NkWh9ZZfsvIla84TqaQG0Go+Qe8o2Db6Q5ps46mhFcdxFJRIXpEnCOteieHf7a2d4gccjePyOt+jp7Ee/eSY"
    "FONHuCK9qY0+8TyUwe/ijVWlxrIFu62KPtCc3hYXUVGe61aNIPs0xMvTSM5Bd7SXfaOD/B2vNbc1RU1M8XB8"
    "n+fwFl1ERfQXZ0ZniYRiVsv78xY7gpHWUlPaUyTTrLSFdmpdymjxNaPc40CpLWZnUVZK6G1fT7G1M2JTV1rt"
    "Z3w/9eS/dp6joBvNxzCLJUdtMsWWwxJFyylxcc9lT6gh9/DFdo++0kmNyS9kkAy3GjbUrslTzql/cACDbYkN"
    "lCVS2HboRC7AZ+2ddpU1/kAK6H1P6p00gd1Ae41Fh2mRr+QOEg/F+Zt19xqSjRLiNp3zUxQgEbkTLUEbC0Ml"
    "fLOEkXW6Sap7eRtACzW/ruOPFAG5qKRkoQDPT1X9t+yWl/aJb/ha/qY3/RBXgFNDj2+3NZLsoQUcVXLhmCmF"
    "6gmEUEQq469lHbX0AKSl5p6Gc7BII1ltY7Df2lpcXynJpao+0z5cCP0pSK/ZDl9AFfi2NMRQ/EU0eoXHGoPL"
    "axZ5jCR0n5LZDiSl2b5D8lsMvaZJJSpv8vm6yrrgjo+hX/KI92ITLvNc74ZVktBrYYAv4XJIrpktnH6nW5LY"
    "xAI0lBZKBuuiCdBUq1EWHoKGlEsv0Ce7LNNRkMbwaBxDLSvmB6HW2EbZfE6rd6ySl/LvOo4fynNP61MxT7dZ"
    "WP9APziGVfPKtl2+8Vzrx52pBaLTHYpEbk+ppr1EXAjS6Q/64G35sTS39tyTSks4zJZvspUu03FLJPtQW9/z"
    "Ie9pk3k439JieoVDLLv/kdccgRLwa1stn72fPbREvNNLWDqO5mf1mYWlYVTN0tNw+adptAjn0BX6gftSI/8h"
    "Deytl+Tl3EnG+xG7jaVaxxJrch+v93SI5+Lx1gN78FRTWQrU5LweaJG4DkJtpKxEcpyWXTTZ33hrO2TtfKlV"
    "sRQ2DwdlFE1GXNsj+ayptdb61EKa60EfbQE8wVNLUaSxcD6JI3A0G+QdJZdfpxE4wVewhL5Yfk9nJ30uHkmg"
    "zxQOuKK7uI63pq+Y6oR2WG45zZDKH1Al/SkhuoHvyUW/hU68Un+R8wKvofctkQZJS+SV2jYb27QfRfVDKCfd"
    "5RaH8cd8mw/IPr/JZ7kMtvBxSsob6B2eIDU/sgzE+KMbfKSGtUaITK3luu2mA5xD5uA577TP+EtXfYu/0Rt2"
    "RFPbKNmJu/7ej1ATIVloiTwYQ2mdJNQIloEPo4lu5b3cy6PwV82BEXaaXnsvigH1+lbXC+lfTk2RpYC3IpYX"
    "lkFKen+/IKN8gn5AdVmG8Bhod3kUGupHX8R7uJF9QmPKyzlsg6REUz7Hn+ik7fVatNnXWTd7wx/F/BG1l7fS"
    "wMdKf/y2iZaXklEF7Y6YlJwy+VAfh7oYrLusrEfSlhTH42oPKshHqZZUt8NWXwbxG4zW+tzfWvhxHah5uDTe"
    "6gF9btU02J/oK39v8fiXP/ODVl/n2zlbizfSQ4dpSTttZz0yf5ceckFzcyKskHSkUsZiSnSJjS/0nXtjN0+X"
    "zprdpmEA58NR38/v9bNEx009zX2llK2XeRTFBth77KRb3l/zoKjmksZ8ktrQDRkiobxfvugTK8dpZKVF9rGc"
    "UrZJM0oiT3iELvOy+sNK2xqqSO+ksP6mM9RM0yErSuKVTNOeyI742O9ZdTvOa0pajPr+AE09iIfTAvzj0d6R"
    "YnlEncUv5Y9Ps+U+lcJwEk0l1ZDEJnoHr8LukzSvDvZ2nNifSG/p6qX1vsSQQTpKK+GOVKHSfpV+2ntKQBN1"
    "qFSgZBKKCp6Tl+sG1LOaEgYZaabP9xXIhvD6kAtYgN2VM3KEV/oX36xTcBRpfIE8sPRyWOfKZ3Wt6Iu0qA+h"
    "rzLLsiCeVPGVtNeiSSwbxVcsDl3wfz4DaTk7TddLtM9m+WzNZtW1Pf5JHq+Nl/5B/gPeg5Hb"
)
