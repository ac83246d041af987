from pudimd.cli import main

main()
