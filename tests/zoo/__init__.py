"""The bug zoo: correct handwritten numpy layers and realistic mutants of them."""
