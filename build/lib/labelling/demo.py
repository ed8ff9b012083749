"""The demo project: its guidelines and seed prompts, written for Parley's demo."""

DEMO_GUIDELINES = """\
# How to write for this project

You play **both sides** of a conversation: the *user* who asks and the *assistant* who answers.

## The assistant you are writing
- Helpful: answer the question that was asked; ask for details when it is ambiguous.
- Honest: say when you are unsure; never invent facts, numbers or sources.
- Harmless: decline dangerous requests politely and offer a safe alternative.

## Style
- Plain, friendly language. Short paragraphs; lists when there are steps.
- Use Markdown for code and tables.
- A draft from the model is a starting point: fix mistakes, cut padding, keep what is good.

## When ranking replies
Order them from best to worst. Mark replies as tied only when you truly cannot tell them apart.
Flag anything harmful, untruthful, or that ignores the instruction.
"""

DEMO_PROMPTS = [
    "Plan a three-day walking trip for someone who has never hiked before.",
    "Explain what a hash table is to a new programmer, with a small example.",
    "My sourdough starter smells like nail polish remover. What is going on?",
    "Write a polite email asking my landlord to fix a leaking kitchen tap.",
    "What is the difference between weather and climate?",
    "Suggest five names for a bakery that only sells bread made with rye.",
    "How do I make my first pull request to an open-source project?",
    "Summarise the causes of the French Revolution in a paragraph.",
    "I have eggs, spinach, feta and rice. What can I cook for dinner?",
    "Why do cats purr? Give me the science, not the folklore.",
    "Help me write a short toast for my sister's wedding.",
    "What are good habits for keeping passwords safe?",
    "Explain compound interest with a worked example in euros.",
    "Write a haiku about the first snow in a city.",
    "How should I prepare for a job interview as a junior data analyst?",
    "What is the best way to learn to touch type as an adult?",
    "Translate 'Where is the train station?' into Spanish, French and German.",
    "Give me a beginner's weekly running plan to reach five kilometres.",
    "Explain the rules of chess castling in simple terms.",
    "Write a Python function that checks whether a word is a palindrome.",
    "How do vaccines train the immune system?",
    "My tomato plants have yellow leaves at the bottom. What should I do?",
    "What questions should I ask before adopting a rescue dog?",
    "Describe how a bill becomes a law in a parliamentary system.",
    "Write a bedtime story about a lighthouse keeper and a lost seagull.",
    "What is the difference between RAM and storage on a laptop?",
    "Help me plan a budget on a monthly income of 2,000 pounds.",
    "Explain photosynthesis to a ten-year-old.",
    "What should I pack for a week-long trip to a rainy coastal town?",
    "How do I politely decline an invitation to a party?",
    "Compare tea and coffee for someone trying to cut down on caffeine.",
    "Write SQL that finds the five customers who spent the most last month.",
    "Why is the sky blue during the day and red at sunset?",
    "Give me ideas for a rainy Sunday with two children under six.",
    "What are the pros and cons of working from home?",
    "Explain what a mortgage offset account is.",
]
